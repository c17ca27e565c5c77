-- The gate's topics: each partition's offset stored in the lake (the next message to drain).
SELECT topic, partition, max(next_offset)
FROM ops.kafka_offsets
WHERE topic IN (SELECT unnest(?))
GROUP BY ALL
ORDER BY ALL
