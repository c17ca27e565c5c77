-- The positions open at D 08:00 (the day's margin report) in contracts: the position over its contract size
-- (an inverse future's USD, 10 per BTC contract; a linear one's coin, 0.1 SOL per SOL_USDC-PERPETUAL
-- contract; an option's coin). Perpetuals carry Deribit's far expiry, 3000-01-01.
WITH spec AS (
    {instrument_spec}
)
SELECT
    p.account_id,
    -- the contract, not its coin: BTC (inverse, 10 USD) and BTC_USDC (linear, 0.001 BTC) positions do not
    -- net against each other; `base` (BTC) is the default of its commodity code and strike decimals
    split_part(p.instrument_name, '-', 1) AS commodity,
    split_part(split_part(p.instrument_name, '-', 1), '_', 1) AS base,
    CASE p.option_type WHEN 'call' THEN 'C' WHEN 'put' THEN 'P' END AS put_call,
    CAST(coalesce(p.expiration, TIMESTAMP '3000-01-01 08:00:00') AS DATE) AS expiration,
    p.strike,
    CASE WHEN p.kind = 'option' THEN 'E' END AS exercise_style,
    p.position / nullif(s.contract_size, 0) AS position
FROM reports.margin_positions p
LEFT JOIN spec s USING (instrument_name)
WHERE p.as_of_date = {d} AND p.status = 'open' AND p.position <> 0
ORDER BY ALL
