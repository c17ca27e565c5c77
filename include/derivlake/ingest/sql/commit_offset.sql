-- Compare-and-set: moves the partition's offset only if no other drain moved it first.
UPDATE ops.kafka_offsets
SET next_offset = $new_offset, updated_at = now()::TIMESTAMP, run_id = $run_id
WHERE topic = $topic AND partition = $partition AND next_offset = $old_offset
