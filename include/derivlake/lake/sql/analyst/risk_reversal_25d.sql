-- 25-delta risk reversal per day (08:00 snapshots), underlying and expiry: IV of the call whose delta is
-- nearest +0.25 minus IV of the put nearest -0.25, in vol points.
WITH snap AS (
    SELECT date + INTERVAL 8 HOUR AS snapshot, symbol, type, expiration,
           arg_max(mark_iv, timestamp) AS iv, arg_max(delta, timestamp) AS delta
    FROM market.options_ticker
    WHERE timestamp < date + INTERVAL 8 HOUR
    GROUP BY ALL
)
SELECT snapshot::DATE AS day, split_part(symbol, '-', 1) AS underlying, expiration::DATE AS expiry,
       round(arg_min(iv, abs(delta - 0.25)) FILTER (WHERE type = 'call')
           - arg_min(iv, abs(delta + 0.25)) FILTER (WHERE type = 'put'), 2) AS rr_25d
FROM snap
WHERE expiration > snapshot
GROUP BY ALL
HAVING rr_25d IS NOT NULL
ORDER BY day, underlying, expiry
