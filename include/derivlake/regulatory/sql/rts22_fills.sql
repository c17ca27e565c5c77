-- The business day's executions of the desk accounts, [D-1 08:00, D 08:00), each with its instrument's
-- spec: one RTS 22 transaction per fill. The order is the file's.
WITH spec AS (
    {instrument_spec}
)
SELECT
    f.account_id, f.trade_id, f.instrument_name, f.timestamp, f.direction, f.amount, f.price,
    -- the TxId of a fill whose account and trade id are longer than its 52 characters (records.py)
    upper(left(sha256(f.account_id || chr(31) || f.trade_id), 32)) AS id_digest,
    coalesce(f.underlying_price, f.index_price) AS usd_rate,  -- a coin price x this is USD (domain.md 1)
    s.kind, s.inverse AS is_inverse, s.option_type, s.strike,
    CASE WHEN NOT s.perpetual THEN CAST(s.expiration AS DATE) END AS expiry,
    s.contract_size,
    coalesce(
        s.price_index,
        CASE WHEN s.inverse THEN lower(split_part(f.instrument_name, '-', 1)) || '_usd'
             ELSE lower(split_part(f.instrument_name, '-', 1)) END
    ) AS underlying_index
FROM desk.fills f
LEFT JOIN spec USING (instrument_name)
WHERE f.date IN ({d_prev}, {d}) AND f.timestamp >= {day_start} AND f.timestamp < {snapshot}
ORDER BY f.timestamp, f.account_id, f.trade_id
