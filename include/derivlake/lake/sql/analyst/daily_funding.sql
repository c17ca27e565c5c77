-- Daily funding of the perpetuals: the 8-hour rate in force at each settlement (00, 08, 16 UTC),
-- summed per day, in percent. Only settlements the perpetual's data has reached count: a ticker's
-- funding_timestamp is the next settlement, so the last day's upcoming one (the rate in force now)
-- has not happened yet.
WITH settlements AS (
    SELECT symbol, funding_timestamp, arg_max(funding_rate, timestamp) AS rate_8h
    FROM market.derivative_ticker
    WHERE symbol LIKE '%PERPETUAL' AND funding_rate IS NOT NULL
    GROUP BY ALL
), newest AS (
    SELECT symbol, max(timestamp) AS newest
    FROM market.derivative_ticker
    WHERE symbol LIKE '%PERPETUAL'
    GROUP BY ALL
)
SELECT funding_timestamp::DATE AS day, symbol, count(*) AS settlements,
       round(100 * sum(rate_8h), 5) AS funding_pct
FROM settlements JOIN newest USING (symbol)
WHERE funding_timestamp <= newest
GROUP BY ALL
ORDER BY day, symbol
