-- The rows of {stage} that are not upstream duplicates: the first message of each {key} in the batch,
-- and only when the lake has no row with that key yet ({date_filter} prunes to the touched dates; an
-- equality on the exchange timestamp in {key_match}, where the output has one, prunes to the batch's
-- time range).
-- {message_key} orders messages by (partition, offset).
SELECT s.* EXCLUDE (msg_rank)
FROM (
    SELECT *, {message_key} AS msg_pos, min({message_key}) OVER (PARTITION BY {key}) AS msg_rank
    FROM {stage}
) s
WHERE s.msg_pos = s.msg_rank
  AND NOT EXISTS (
    SELECT 1 FROM {table} x
    WHERE {date_filter} {key_match}
  )
