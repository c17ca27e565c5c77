-- The most traded options over the whole lake: contracts, trades and USD notional. Inverse prices are in
-- coin (contracts x price x index); linear USDC options (`SOL_USDC-...`) are priced in USDC already.
SELECT symbol, count(*) AS trades, round(sum(amount), 2) AS contracts,
       round(sum(amount * price * CASE WHEN contains(split_part(symbol, '-', 1), '_') THEN 1 ELSE index_price END),
             0) AS usd_volume
FROM market.trades
WHERE regexp_matches(symbol, '-[CP]$')
GROUP BY symbol
ORDER BY contracts DESC, symbol
LIMIT 10
