SELECT
    t.account_id, t.trade_id, t.order_id, t.instrument_name, ms_ts(t.timestamp) AS timestamp,
    us_ts(received_at_us) AS local_timestamp, t.direction, t.price, t.amount, t.liquidity, t.fee,
    t.fee_currency, t.order_type, t.iv, t.underlying_price, t.index_price, t.mark_price, t.label,
    t.reduce_only, t.post_only, t.profit_loss, t.block_trade_id,
    CAST(ms_ts(t.timestamp) AS DATE) AS date, kafka_topic, kafka_partition, kafka_offset
FROM good
