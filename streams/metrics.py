"""Worker metrics (Prometheus): what came in, what was accepted, dropped or dead-lettered."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENTS_CONSUMED = Counter(
    "cxpulse_ingest_messages_total", "Messages consumed from the input topics."
)
EVENTS_ACCEPTED = Counter(
    "cxpulse_events_accepted_total", "Distinct events accepted into journey state."
)
DUPLICATES = Counter(
    "cxpulse_events_duplicate_total", "Copies of already accepted events, dropped."
)
STATE_RECORDS_UNREADABLE = Counter(
    "cxpulse_state_records_unreadable_total",
    "Records of the state topic that cxpulse did not write and could not read; skipped.",
)
CONFLICTS = Counter(
    "cxpulse_events_conflict_total",
    "Copies of an event_id with different content; one is kept by an order-free rule.",
)
DEAD_LETTERS = Counter(
    "cxpulse_dead_letters_total", "Messages sent to the dead-letter topic.", ["stage", "reason"]
)
KEYS = Gauge("cxpulse_journey_keys", "Journey keys held in memory by this worker.")
FROZEN_KEYS = Gauge(
    "cxpulse_journey_keys_frozen",
    "Of those, keys idle long enough to be held compressed (CXPULSE_FREEZE_AFTER_SECONDS).",
)
THAWS = Counter(
    "cxpulse_journey_key_thaws_total",
    "Frozen keys restored because an event or a due time reached them.",
)
OPEN_JOURNEYS = Gauge("cxpulse_open_journeys", "Journeys not closed yet, held by this worker.")
EVENT_LAG = Gauge(
    "cxpulse_watermark_lag_seconds",
    "Wall clock minus the newest event time this worker processed (how far behind it runs).",
)
CONSUMER_LAG = Gauge(
    "cxpulse_consumer_lag_messages",
    "Messages in a partition not yet consumed by this worker (high watermark - position).",
    ["stage", "topic", "partition"],
)
FLUSH_SECONDS = Histogram(
    "cxpulse_flush_seconds",
    "Time to get a batch's rows and states acknowledged by Kafka before acknowledging the input.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
ALERT_EVALUATIONS = Counter("cxpulse_alert_evaluations_total", "Alert evaluations made.")
ALERT_CHANGES = Counter(
    "cxpulse_alert_changes_total", "Alerts that became firing or resolved.", ["rule", "change"]
)
NOTIFICATIONS = Counter(
    "cxpulse_notifications_total",
    "Alert notifications by destination and result (delivered, retried, failed, dropped).",
    ["destination", "result"],
)

RECOMPUTES = Counter(
    "cxpulse_journey_recomputes_total",
    "Journeys and contacts recomputed beyond the ones an event belongs to (the incremental "
    "state's fallbacks), by cause: neighbour (a next start, escalation or follow-up moved), "
    "resolution (TTR), merge and split (an event joined or left runs).",
    ["cause"],
)


def serve(port: int) -> int:
    """Expose /metrics on 127.0.0.1:port (0 picks a free port); returns the port."""
    server, _thread = start_http_server(port, addr="127.0.0.1")
    return int(server.server_address[1])
