SELECT
    'deribit' AS exchange, t.instrument_name AS symbol, ms_ts(t.timestamp) AS timestamp,
    us_ts(received_at_us) AS local_timestamp, t.trade_id AS id, t.direction AS side, t.price, t.amount,
    t.trade_seq, t.index_price, t.mark_price, t.iv, t.liquidation, t.block_trade_id, t.tick_direction,
    CAST(ms_ts(t.timestamp) AS DATE) AS date, kafka_topic, kafka_partition, kafka_offset
FROM good
