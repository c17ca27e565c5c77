-- The broker topic id the stored offsets of a topic belong to: the latest recorded.
SELECT topic_id
FROM ops.kafka_topics
WHERE topic = ?
ORDER BY recorded_at DESC
LIMIT 1
