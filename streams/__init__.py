"""Stream processing: faust app, agents and Kafka adapters."""
