-- The next chunk of a topic's quarantined messages after (partition, offset) cursor `$after_*`, shaped
-- as a drain's raw batch (normalize/core.py), optionally only those whose reason starts with `$reason`.
SELECT topic AS kafka_topic, partition AS kafka_partition, "offset" AS kafka_offset,
       epoch_us(received_at) AS received_at_us, key, raw_value AS value
FROM ops.quarantine
WHERE topic = $topic AND starts_with(error, $reason)
  AND (partition, "offset") > ($after_partition, $after_offset)
ORDER BY partition, "offset"
LIMIT $chunk
