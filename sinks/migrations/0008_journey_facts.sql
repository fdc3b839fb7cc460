-- Driver facts of each journey in a funnel (design section 4b): (kind, attr, value) of what its
-- events say about why it stopped (an eligibility refusal's reason, a failed test), so the
-- drop-off drivers can rank causes beside segments. Sorted and distinct per journey (the worker's
-- streams/driver_facts.py): ARRAY JOIN over it counts each journey once per fact.
ALTER TABLE journey_funnels ADD COLUMN IF NOT EXISTS facts Array(Tuple(String, String, String));
