-- Silences live in their own table: the API writes only silences, the evaluator only alert
-- states and figures, so neither can overwrite the other's latest write (a silence POSTed while
-- the evaluator writes, or an alert resolved while a silence is written).
-- ReplacingMergeTree(updated_at): the latest silence of an alert wins.
CREATE TABLE IF NOT EXISTS alert_silences
(
    id String,
    silenced_until DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY id;

ALTER TABLE alerts DROP COLUMN IF EXISTS silenced_until;
