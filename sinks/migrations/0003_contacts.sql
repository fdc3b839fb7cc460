-- Time to resolution of each journey (order placed, or the first resolved contact after the
-- escalation), for the containment figures.
ALTER TABLE journeys ADD COLUMN IF NOT EXISTS ttr_ms Nullable(Int64);

-- Contact snapshots: one row per contact (the cc.* events of one contact_id), latest version
-- wins, tombstones remove identities a late event replaced (an earlier contact_started moves the
-- start, and with it the identity and the partition).
-- Flags are 0/1 so every KPI is a sum of flags or of waits over the latest versions; waits and
-- handle times in ms (NULL when not applicable).
-- ORDER BY (toStartOfHour(started_at), journey_key, contact_id): KPI queries read a time range;
-- started_at is fixed per identity, so the key stays an identity key.
-- PARTITION BY month of started_at, for the same reason as journeys.
CREATE TABLE IF NOT EXISTS contacts
(
    journey_key String,
    contact_id String,
    version UInt64,
    is_deleted UInt8,
    started_at DateTime64(3, 'UTC'),
    customer_id String,
    channel LowCardinality(String),
    queue LowCardinality(String),
    team LowCardinality(String),
    shift LowCardinality(String),
    queued UInt8,
    answered UInt8,
    abandoned UInt8,
    short_abandoned UInt8,
    answered_within_sl UInt8,
    wait_ms Nullable(Int64),
    handle_ms Nullable(Int64),
    transferred UInt8,
    transfers UInt16,
    ivr_outcome LowCardinality(String),
    ivr_contained UInt8,
    ivr_final UInt8,
    resolved UInt8,
    first_contact_resolved UInt8,
    fcr_final UInt8,
    part_shipped UInt8,
    csat Nullable(UInt8),
    nps Nullable(UInt8),
    ces Nullable(UInt8),
    linked_session_id String,
    attrs Map(LowCardinality(String), String)
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(started_at)
ORDER BY (toStartOfHour(started_at), journey_key, contact_id);
