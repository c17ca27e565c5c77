-- Versions ({table}): a message is a new version of its {entity} unless it repeats the version before
-- it: the previous message of that {entity} in the batch or, for the batch's first, the lake's latest
-- version. A spec that changes and changes back is two new versions (matched against every version
-- ever kept, the change back was dropped and the lake's latest version stayed the changed one).
-- {message_key} orders messages by (partition, offset).
WITH s AS (
    SELECT *, {message_key} AS msg_pos FROM {stage}
), latest AS (
    SELECT {entity}, struct_pack({key}) AS version
    FROM {table}
    WHERE {entity} IN (SELECT {entity} FROM s)
    QUALIFY row_number() OVER (
        PARTITION BY {entity} ORDER BY valid_from DESC, kafka_partition DESC, kafka_offset DESC
    ) = 1
), ordered AS (
    SELECT *, struct_pack({key}) AS version,
           lag(struct_pack({key})) OVER (PARTITION BY {entity} ORDER BY msg_pos) AS previous
    FROM s
)
SELECT o.* EXCLUDE (version, previous)
FROM ordered o
LEFT JOIN latest l ON l.{entity} = o.{entity}
WHERE o.version IS DISTINCT FROM coalesce(o.previous, l.version)
