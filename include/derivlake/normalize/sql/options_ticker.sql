-- Strike and expiry are parsed once per distinct instrument of the batch, not once per message.
WITH names AS (
    SELECT DISTINCT t.instrument_name AS name FROM good
    WHERE suffix(t.instrument_name, '-C') OR suffix(t.instrument_name, '-P')
), specs AS (
    SELECT name, deribit_strike(name) AS strike_price, deribit_expiry(name) AS expiration FROM names
)
SELECT
    'deribit' AS exchange, t.instrument_name AS symbol, ms_ts(t.timestamp) AS timestamp,
    us_ts(received_at_us) AS local_timestamp,
    CASE WHEN suffix(t.instrument_name, '-C') THEN 'call' ELSE 'put' END AS type,
    s.strike_price, s.expiration,
    t.open_interest, t.last_price,
    t.best_bid_price AS bid_price, t.best_bid_amount AS bid_amount, t.bid_iv,
    t.best_ask_price AS ask_price, t.best_ask_amount AS ask_amount, t.ask_iv,
    t.mark_price, t.mark_iv, t.underlying_index, t.underlying_price,
    t.greeks.delta AS delta, t.greeks.gamma AS gamma, t.greeks.vega AS vega, t.greeks.theta AS theta,
    t.greeks.rho AS rho,
    t.index_price, t.interest_rate, t.settlement_price, t.estimated_delivery_price,
    t.stats.volume AS volume, t.stats.volume_usd AS volume_usd, t.state,
    CAST(ms_ts(t.timestamp) AS DATE) AS date, kafka_topic, kafka_partition, kafka_offset
FROM good
JOIN specs s ON s.name = t.instrument_name
