-- Journey snapshots: the latest state of every portal journey, one row per version.
-- ReplacingMergeTree(version, is_deleted): readers take the latest version (FINAL); a snapshot
-- written twice or replayed collapses, and a tombstone (is_deleted = 1) removes an identity that
-- a late event dissolved (its start moved, or two journeys merged).
-- ORDER BY (journey_key, journey_id): the identity; every version of a journey replaces in place.
-- PARTITION BY month of start_at: start_at is fixed for an identity (a different first event is
-- a different identity), so all versions of a row share a partition, which replacing requires.
CREATE TABLE IF NOT EXISTS journeys
(
    journey_key String,
    journey_id String,
    version UInt64,
    is_deleted UInt8,
    start_at DateTime64(3, 'UTC'),
    last_activity_at DateTime64(3, 'UTC'),
    closed UInt8,
    outcome LowCardinality(String),
    escalated_at Nullable(DateTime64(3, 'UTC')),
    ordered_at Nullable(DateTime64(3, 'UTC')),
    attrs Map(LowCardinality(String), String),
    sessions Array(String)
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(start_at)
ORDER BY (journey_key, journey_id);

-- Funnel progress of each journey that reached a funnel's first step (one row per funnel).
-- reach_ms[k] = ms from step 1 to step k (NULL: not reached); step 1 is 0.
-- last_step / dropped_step / escalated_step / abandoned_step are 0-based step indexes, -1 = none,
-- so per-step figures are plain countIf over the latest versions.
-- ORDER BY (funnel, toStartOfHour(start_at), journey_key, journey_id): queries read one funnel
-- over a time range; start_at is fixed per identity, so the key stays an identity key.
CREATE TABLE IF NOT EXISTS journey_funnels
(
    funnel LowCardinality(String),
    journey_key String,
    journey_id String,
    version UInt64,
    is_deleted UInt8,
    start_at DateTime64(3, 'UTC'),
    entered_at DateTime64(3, 'UTC'),
    closed UInt8,
    outcome LowCardinality(String),
    attrs Map(LowCardinality(String), String),
    reach_ms Array(Nullable(Int64)),
    last_step Int8,
    dropped_step Int8,
    escalated_step Int8,
    abandoned_step Int8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(start_at)
ORDER BY (funnel, toStartOfHour(start_at), journey_key, journey_id);

-- Freshness per keyed partition: the newest event time the journey stage has processed and its
-- watermark. ReplacingMergeTree(updated_at): one current row per partition.
CREATE TABLE IF NOT EXISTS freshness
(
    partition UInt32,
    newest_event_at DateTime64(3, 'UTC'),
    watermark_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY partition;
