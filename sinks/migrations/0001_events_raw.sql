-- Raw accepted events, kept for drill-down (what exactly did this journey do?).
-- ReplacingMergeTree: a re-sent copy of an event (same journey, time and id) collapses into one
-- row on merge, and readers that need exact counts use FINAL.
-- ORDER BY (journey_key, occurred_at, event_id): drill-down reads one journey's events in time
-- order, and the full key is the event's identity, which is what replacing deduplicates on.
-- PARTITION BY day: the TTL drops whole days; late events touch at most max_event_age days.
-- TTL 30 days = max_event_age: older events are rejected at ingest, so nothing older is useful.
CREATE TABLE IF NOT EXISTS events_raw
(
    event_id String,
    type LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    journey_key String,
    attrs Map(LowCardinality(String), String),
    payload String CODEC(ZSTD(3)),
    source_topic LowCardinality(String),
    source_partition UInt32,
    source_offset UInt64,
    received_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (journey_key, occurred_at, event_id)
TTL toDateTime(occurred_at) + INTERVAL 30 DAY DELETE
SETTINGS ttl_only_drop_parts = 1;
