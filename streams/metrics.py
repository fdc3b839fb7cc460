"""Worker metrics (Prometheus): what came in, what was accepted, dropped or dead-lettered."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

EVENTS_CONSUMED = Counter(
    "cxpulse_ingest_messages_total", "Messages consumed from the input topics."
)
EVENTS_ACCEPTED = Counter(
    "cxpulse_events_accepted_total", "Distinct events accepted into journey state."
)
DUPLICATES = Counter(
    "cxpulse_events_duplicate_total", "Copies of already accepted events, dropped."
)
DEAD_LETTERS = Counter(
    "cxpulse_dead_letters_total", "Messages sent to the dead-letter topic.", ["stage", "reason"]
)
KEYS = Gauge("cxpulse_journey_keys", "Journey keys held in memory by this worker.")


def serve(port: int) -> int:
    """Expose /metrics on 127.0.0.1:port (0 picks a free port); returns the port."""
    server, _thread = start_http_server(port, addr="127.0.0.1")
    return int(server.server_address[1])
