-- How many offset rows each partition of the topic has: one, unless a partition is new (none) or two
-- drains raced to create its row before the claim row existed (two).
SELECT partition, count(*)
FROM ops.kafka_offsets
WHERE topic = ?
GROUP BY partition
