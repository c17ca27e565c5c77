-- Offset resets (an explicit --reset-offsets, a topic created again): they skip or re-read messages,
-- so the newest are shown until someone has looked.
SELECT topic, partition, old_offset, new_offset, reason, messages_affected, reset_at
FROM ops.offset_resets
ORDER BY reset_at DESC
LIMIT 20
