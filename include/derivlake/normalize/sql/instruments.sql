-- Slowly changing: every message is a version valid from its receive time; identical repeats are
-- dropped at commit (ingest/sql/dedup_versions.sql).
SELECT
    'deribit' AS exchange, t.instrument_name, t.kind, t.base_currency, t.quote_currency,
    t.settlement_currency, t.counter_currency,
    coalesce(t.instrument_type, t.future_type,
             CASE WHEN coalesce(t.settlement_currency, t.quote_currency) = t.base_currency
                 THEN 'reversed' ELSE 'linear' END)
        AS instrument_type,
    t.option_type, t.strike, ms_ts(t.expiration_timestamp) AS expiration_ts,
    ms_ts(t.creation_timestamp) AS creation_ts, t.settlement_period, t.contract_size, t.tick_size,
    t.min_trade_amount, t.price_index, t.is_active, t.maker_commission, t.taker_commission,
    t.block_trade_commission,
    us_ts(received_at_us) AS valid_from, us_ts(received_at_us) AS local_timestamp,
    CAST(us_ts(received_at_us) AS DATE) AS date, kafka_topic, kafka_partition, kafka_offset
FROM good
