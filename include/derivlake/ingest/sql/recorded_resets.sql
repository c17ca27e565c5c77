-- The resets a run committed for a topic: a retry after a dropped catalog connection looks here
-- before it calls its reset lost to another drain.
SELECT partition, old_offset, new_offset
FROM ops.offset_resets
WHERE run_id = ? AND topic = ?
