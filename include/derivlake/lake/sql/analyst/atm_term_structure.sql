-- ATM IV term structure at 08:00 UTC of $day: per underlying and expiry, the option whose strike is
-- nearest the forward, from the last ticker at or before 08:00.
WITH last_quote AS (
    SELECT symbol, arg_max(mark_iv, timestamp) AS mark_iv, arg_max(underlying_price, timestamp) AS forward,
           any_value(strike_price) AS strike, any_value(expiration) AS expiration
    FROM market.options_ticker
    WHERE date IN ($day::DATE - 1, $day::DATE) AND timestamp <= $day::DATE + INTERVAL 8 HOUR
      AND expiration > $day::DATE + INTERVAL 8 HOUR
    GROUP BY symbol
)
SELECT split_part(symbol, '-', 1) AS underlying, expiration::DATE AS expiry,
       round(date_diff('hour', $day::DATE + INTERVAL 8 HOUR, expiration) / 24.0, 2) AS days,
       arg_min(strike, abs(ln(strike / forward))) AS atm_strike,
       round(arg_min(mark_iv, abs(ln(strike / forward))), 2) AS atm_iv
FROM last_quote
GROUP BY ALL
ORDER BY underlying, expiry
