-- A partition's first offset row: -1 stands for the log start, wherever it is at the first drain.
INSERT INTO ops.kafka_offsets (topic, partition, next_offset, updated_at, run_id)
VALUES (?, ?, -1, now()::TIMESTAMP, 'init')
