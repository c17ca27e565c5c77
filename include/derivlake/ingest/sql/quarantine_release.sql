-- Take the chunk's messages that the normalizer now accepts out of quarantine (their rows are inserted
-- in the same transaction).
DELETE FROM ops.quarantine AS q
USING (
    SELECT kafka_partition, kafka_offset FROM replay_chunk
    ANTI JOIN stage_quarantine AS s ON s.partition = kafka_partition AND s."offset" = kafka_offset
) AS r
WHERE q.topic = $topic AND q.partition = r.kafka_partition AND q."offset" = r.kafka_offset
