-- Daily funding of the perpetuals: the 8-hour rate in force at each settlement (00, 08, 16 UTC),
-- summed per day, in percent.
WITH settlements AS (
    SELECT symbol, funding_timestamp, arg_max(funding_rate, timestamp) AS rate_8h
    FROM market.derivative_ticker
    WHERE symbol LIKE '%PERPETUAL' AND funding_rate IS NOT NULL
    GROUP BY ALL
)
SELECT funding_timestamp::DATE AS day, symbol, count(*) AS settlements,
       round(100 * sum(rate_8h), 5) AS funding_pct
FROM settlements
GROUP BY ALL
ORDER BY day, symbol
