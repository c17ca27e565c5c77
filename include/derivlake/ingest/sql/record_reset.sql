-- One explicit offset reset, committed with the offset's compare-and-set.
INSERT INTO ops.offset_resets (
    topic, partition, old_offset, new_offset, reason, messages_affected, reset_at, run_id
)
VALUES (?, ?, ?, ?, ?, ?, now()::TIMESTAMP, ?)
