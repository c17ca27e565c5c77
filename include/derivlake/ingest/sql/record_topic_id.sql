-- (topic, topic_id, run_id): the broker topic id the offsets belong to from now on.
INSERT INTO ops.kafka_topics VALUES (?, ?, now()::TIMESTAMP, ?)
