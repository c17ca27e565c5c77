-- (topic, partition, old_offset, new_offset, reason, messages_affected, run_id): one explicit
-- offset reset, committed with the offset's compare-and-set.
INSERT INTO ops.offset_resets VALUES (?, ?, ?, ?, ?, ?, now()::TIMESTAMP, ?)
