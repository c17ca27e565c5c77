-- 25-delta risk reversal per day (08:00 UTC snapshots), underlying and expiry, in vol points: the call's
-- mark IV at delta +0.25 minus the put's at -0.25, each linear in delta between the two options around it
-- (exchange deltas; each series' last ticker of the day at or before 08:00). The definition of
-- reports.options_chain_expiry.rr_25d. An expiry whose calls (or puts) do not reach 0.25 (-0.25) on both
-- sides has no 25-delta option and no row: its nearest call could be a 40-delta one.
WITH snap AS (
    SELECT date + INTERVAL 8 HOUR AS snapshot, symbol, any_value(type) AS type,
           any_value(expiration) AS expiration,
           arg_max({'iv': mark_iv, 'delta': delta}, (timestamp, local_timestamp, kafka_offset)) AS q
    FROM market.options_ticker
    WHERE timestamp <= date + INTERVAL 8 HOUR
    GROUP BY date, symbol
), points AS (
    SELECT snapshot, split_part(symbol, '-', 1) AS underlying, expiration, type, q.delta AS delta, q.iv AS iv,
           CASE type WHEN 'call' THEN 0.25 ELSE -0.25 END AS target
    FROM snap
    WHERE expiration > snapshot AND q.delta IS NOT NULL AND q.iv IS NOT NULL
), around AS (
    SELECT snapshot, underlying, expiration, type, any_value(target) AS target,
           arg_max({'d': delta, 'iv': iv}, delta) FILTER (WHERE delta <= target) AS lo,
           arg_min({'d': delta, 'iv': iv}, delta) FILTER (WHERE delta >= target) AS hi
    FROM points
    GROUP BY ALL
), at_25d AS (
    SELECT snapshot, underlying, expiration, type,
           CASE WHEN hi.d = lo.d THEN lo.iv ELSE lo.iv + (hi.iv - lo.iv) * (target - lo.d) / (hi.d - lo.d) END AS iv
    FROM around
    WHERE lo IS NOT NULL AND hi IS NOT NULL
), sides AS (
    SELECT snapshot, underlying, expiration,
           any_value(iv) FILTER (WHERE type = 'call') AS call_iv, any_value(iv) FILTER (WHERE type = 'put') AS put_iv
    FROM at_25d
    GROUP BY ALL
)
SELECT snapshot::DATE AS day, underlying, expiration::DATE AS expiry, round(call_iv, 2) AS call_25d_iv,
       round(put_iv, 2) AS put_25d_iv, round(call_iv - put_iv, 2) AS rr_25d
FROM sides
WHERE call_iv IS NOT NULL AND put_iv IS NOT NULL
ORDER BY day, underlying, expiry
