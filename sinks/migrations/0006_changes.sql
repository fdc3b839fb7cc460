-- Changes to the portal (design section 4b): what the portal team changed, when, and where, so
-- dashboards annotate it and alerts that start soon after name it.
-- ReplacingMergeTree(version, is_deleted): a DELETE writes a tombstone (is_deleted = 1) and
-- re-adding the id writes a higher version, so the latest write wins deterministically; readers
-- use FINAL and skip tombstones.
-- ORDER BY id: the identity; changes are few (people write them), every query reads them all.
CREATE TABLE IF NOT EXISTS changes
(
    id String,
    version UInt64,
    is_deleted UInt8,
    title String,
    at DateTime64(3, 'UTC'),
    funnel Nullable(String),
    step Nullable(String),
    filters Map(String, String),
    notes String
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY id;

-- The changes an alert names (JSON array of {id, title, at}), as they were when it fired: a
-- snapshot, so the alert keeps saying what preceded it even if a change is later removed.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS recent_changes String DEFAULT '[]';
