-- Alerts: the current state of each alert, one row per version (design sections 7 and 8).
-- id is stable per rule + funnel step + segment, so an alert that fires again is the same row.
-- ReplacingMergeTree(updated_at): the latest write wins, whether from the evaluator (state,
-- rates) or from a silence; both carry the other's fields forward.
-- ORDER BY id: the identity; alerts are few, every query reads them all.
CREATE TABLE IF NOT EXISTS alerts
(
    id String,
    rule LowCardinality(String),
    state LowCardinality(String),
    funnel LowCardinality(String),
    step LowCardinality(String),
    segment Map(LowCardinality(String), String),
    current_rate Float64,
    baseline_rate Float64,
    window_journeys UInt32,
    z Float64,
    started_at DateTime64(3, 'UTC'),
    resolved_at Nullable(DateTime64(3, 'UTC')),
    silenced_until Nullable(DateTime64(3, 'UTC')),
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY id;
