-- The lake's first option quote, read from the first date partition only.
SELECT min(timestamp)
FROM market.options_ticker
WHERE date = (SELECT min(date) FROM market.options_ticker)
