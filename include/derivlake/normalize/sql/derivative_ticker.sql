-- Futures and perpetuals. Perpetual funding settles every 8 hours (00, 08, 16 UTC): funding_timestamp
-- is the next settlement, funding_rate the 8h rate, predicted_funding_rate the current (instant) one.
SELECT
    'deribit' AS exchange, t.instrument_name AS symbol, ms_ts(t.timestamp) AS timestamp,
    us_ts(received_at_us) AS local_timestamp,
    CASE WHEN ends_with(t.instrument_name, '-PERPETUAL')
        THEN time_bucket(INTERVAL 8 HOUR, ms_ts(t.timestamp)) + INTERVAL 8 HOUR END AS funding_timestamp,
    t.funding_8h AS funding_rate, t.current_funding AS predicted_funding_rate, t.open_interest,
    t.last_price, t.index_price, t.mark_price, t.best_bid_price, t.best_ask_price, t.funding_8h,
    t.current_funding, t.settlement_price, t.estimated_delivery_price,
    CAST(ms_ts(t.timestamp) AS DATE) AS date, kafka_topic, kafka_partition, kafka_offset
FROM good
WHERE NOT (suffix(t.instrument_name, '-C') OR suffix(t.instrument_name, '-P'))
