-- Rows of a partition that agree on the offset are one row written twice: keep the first. Rows that
-- disagree are left for `stored_offsets` to report (which one is right is not known here).
DELETE FROM ops.kafka_offsets
WHERE topic = $topic
  AND rowid NOT IN (SELECT min(rowid) FROM ops.kafka_offsets WHERE topic = $topic GROUP BY partition, next_offset)
