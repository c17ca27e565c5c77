-- ATM IV term structure at 08:00 UTC of $day, per underlying and expiry, in percent: the mark IV at the
-- forward (log-moneyness ln(K/F) = 0), linear in log-moneyness between the strikes around it, a strike's
-- call and put IVs averaged; the nearest strike's IV when the forward is outside the listed strikes.
-- The definition of reports.options_chain_expiry.atm_iv: the nearest strike's IV alone was up to 0.4 vol
-- off it with strikes 1.6% apart. Each series' last ticker at or before 08:00; forward = the median of the
-- expiry's underlying prices.
WITH last_quote AS (
    SELECT symbol, any_value(strike_price) AS strike, any_value(expiration) AS expiration,
           arg_max({'iv': mark_iv, 'forward': underlying_price}, (timestamp, local_timestamp, kafka_offset)) AS q
    FROM market.options_ticker
    WHERE date IN ($day::DATE - 1, $day::DATE) AND timestamp <= $day::DATE + INTERVAL 8 HOUR
      AND expiration > $day::DATE + INTERVAL 8 HOUR
    GROUP BY symbol
), quotes AS (
    SELECT split_part(symbol, '-', 1) AS underlying, expiration, q.forward AS forward,
           ln(strike / nullif(q.forward, 0)) AS k, q.iv AS iv
    FROM last_quote
), smile AS (
    SELECT underlying, expiration, k, avg(iv) AS iv
    FROM quotes
    WHERE k IS NOT NULL AND iv IS NOT NULL
    GROUP BY ALL
), around AS (
    SELECT underlying, expiration,
           arg_max({'k': k, 'iv': iv}, k) FILTER (WHERE k <= 0) AS lo,
           arg_min({'k': k, 'iv': iv}, k) FILTER (WHERE k >= 0) AS hi
    FROM smile
    GROUP BY ALL
), forwards AS (
    SELECT underlying, expiration, median(forward) AS forward
    FROM quotes
    GROUP BY ALL
)
SELECT underlying, expiration::DATE AS expiry,
       round(date_diff('hour', $day::DATE + INTERVAL 8 HOUR, expiration) / 24.0, 2) AS days,
       forward,
       round(CASE WHEN lo IS NULL THEN hi.iv
                  WHEN hi IS NULL OR hi.k = lo.k THEN lo.iv
                  ELSE lo.iv + (hi.iv - lo.iv) * (0 - lo.k) / (hi.k - lo.k) END, 2) AS atm_iv
FROM around JOIN forwards USING (underlying, expiration)
ORDER BY underlying, expiry
