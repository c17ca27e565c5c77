-- The most traded options over the whole lake, by USD notional: the underlying's value traded, amount x
-- index price (an option's amount is in its base coin, BTC, ETH or SOL, on inverse and linear options
-- alike). Ranking by contracts put 394 SOL options (57k USD) above 42 BTC ones (2.5M USD). Also: trades,
-- contracts (the amount: contract size 1 coin), and the premium paid in USD: inverse options are priced in
-- coin (amount x price x index), linear USDC options (`SOL_USDC-...`) in USDC already (amount x price).
SELECT symbol, count(*) AS trades, round(sum(amount), 2) AS contracts,
       round(sum(amount * index_price), 0) AS usd_notional,
       round(sum(amount * price * CASE WHEN contains(split_part(symbol, '-', 1), '_') THEN 1 ELSE index_price END),
             0) AS usd_premium
FROM market.trades
WHERE regexp_matches(symbol, '-[CP]$')
GROUP BY symbol
ORDER BY sum(amount * index_price) DESC, symbol
LIMIT 10
