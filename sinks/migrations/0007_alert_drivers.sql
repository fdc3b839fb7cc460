-- The top drop-off drivers a drop-off alert names (JSON array of {kind, attr, value, rate,
-- rate_rest, excess, p_adjusted}), as they were when it fired: a snapshot, like recent_changes.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS top_drivers String DEFAULT '[]';
