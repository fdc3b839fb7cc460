"""Event contract (version 1); built in the event-contract issue."""
