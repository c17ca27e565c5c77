-- The broker topic id the offsets belong to from now on.
INSERT INTO ops.kafka_topics (topic, topic_id, recorded_at, run_id) VALUES (?, ?, now()::TIMESTAMP, ?)
