-- One row per level; a level is [action, price, amount] and amount 0 (or action 'delete') removes it.
-- A message without levels (the snapshot of an empty book, a change that only moves change_id) is one
-- row with side, price and amount NULL: it still resets the book or continues the change_id chain.
WITH levels AS (
    SELECT t, received_at_us, kafka_topic, kafka_partition, kafka_offset, 'bid' AS side, unnest(t.bids) AS lvl
    FROM good
    UNION ALL
    SELECT t, received_at_us, kafka_topic, kafka_partition, kafka_offset, 'ask' AS side, unnest(t.asks) AS lvl
    FROM good
    UNION ALL
    SELECT t, received_at_us, kafka_topic, kafka_partition, kafka_offset, NULL AS side, NULL AS lvl
    FROM good
    WHERE coalesce(len(t.bids), 0) + coalesce(len(t.asks), 0) = 0
)
SELECT
    'deribit' AS exchange, t.instrument_name AS symbol, ms_ts(t.timestamp) AS timestamp,
    us_ts(received_at_us) AS local_timestamp, coalesce(t.type = 'snapshot', false) AS is_snapshot, side,
    CAST(lvl[2] AS DOUBLE) AS price,
    CASE WHEN lvl[1] = 'delete' THEN 0 ELSE CAST(lvl[3] AS DOUBLE) END AS amount,
    t.change_id, t.prev_change_id,
    CAST(ms_ts(t.timestamp) AS DATE) AS date, kafka_topic, kafka_partition, kafka_offset
FROM levels
