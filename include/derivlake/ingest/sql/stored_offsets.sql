-- Each partition's stored offset, as its lowest and highest row: they differ only if two rows of a
-- partition survived a race (the caller refuses to go on then).
SELECT partition, min(next_offset), max(next_offset)
FROM ops.kafka_offsets
WHERE topic = ?
GROUP BY partition
