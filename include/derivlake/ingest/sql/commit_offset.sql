-- Compare-and-set of all the batch's partitions in one statement: a partition's offset moves only
-- if no other drain moved it first. The caller checks that every partition was updated.
UPDATE ops.kafka_offsets AS o
SET next_offset = n.new_offset, updated_at = now()::TIMESTAMP, run_id = $run_id
FROM (
    SELECT unnest($partitions::INTEGER[]) AS partition, unnest($old_offsets::BIGINT[]) AS old_offset,
           unnest($new_offsets::BIGINT[]) AS new_offset
) AS n
WHERE o.topic = $topic AND o.partition = n.partition AND o.next_offset = n.old_offset
