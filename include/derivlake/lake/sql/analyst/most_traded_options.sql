-- The most traded options over the whole lake: contracts, trades and USD notional (coin price x index).
SELECT symbol, count(*) AS trades, round(sum(amount), 2) AS contracts,
       round(sum(amount * price * index_price), 0) AS usd_volume
FROM market.trades
WHERE regexp_matches(symbol, '-[CP]$')
GROUP BY symbol
ORDER BY contracts DESC, symbol
LIMIT 10
