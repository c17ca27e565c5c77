-- The chain's output tables (issue #6). Idempotent; the lake's own schema.sql creates the `reports` schema.
-- One row per option series alive at the snapshot (08:00 UTC of as_of_date); a rerun of a date replaces
-- that date's rows in one transaction (see chain.py).
CREATE SCHEMA IF NOT EXISTS reports;

CREATE TABLE IF NOT EXISTS reports.options_chain (
    as_of_date DATE, snapshot_ts TIMESTAMP, underlying VARCHAR, base_currency VARCHAR, is_inverse BOOLEAN,
    symbol VARCHAR, expiration TIMESTAMP, option_type VARCHAR, strike DOUBLE, days_to_expiry DOUBLE,
    quote_ts TIMESTAMP, quote_age_s DOUBLE, state VARCHAR,
    open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, vwap DOUBLE, volume DOUBLE, volume_usd DOUBLE,
    trade_count BIGINT, block_volume DOUBLE, block_trade_count BIGINT,
    open_interest DOUBLE, open_interest_prev DOUBLE, open_interest_change DOUBLE,
    forward DOUBLE, index_price DOUBLE, basis DOUBLE, log_moneyness DOUBLE,
    bid DOUBLE, ask DOUBLE, mid DOUBLE, spread DOUBLE, bid_iv DOUBLE, ask_iv DOUBLE,
    mark_price DOUBLE, mark_price_usd DOUBLE, mark_iv DOUBLE,
    delta DOUBLE, gamma DOUBLE, vega DOUBLE, theta DOUBLE, rho DOUBLE,
    calc_delta DOUBLE, calc_gamma DOUBLE, calc_vega DOUBLE, calc_theta DOUBLE, calc_rho DOUBLE,
    greeks_mismatch BOOLEAN, coin_delta DOUBLE,
    is_expiring BOOLEAN, delivery_index VARCHAR, delivery_price DOUBLE, payoff DOUBLE
);

CREATE TABLE IF NOT EXISTS reports.options_chain_expiry (
    as_of_date DATE, underlying VARCHAR, expiration TIMESTAMP, days_to_expiry DOUBLE, series BIGINT,
    forward DOUBLE, atm_iv DOUBLE, iv_25d_call DOUBLE, iv_25d_put DOUBLE, rr_25d DOUBLE, bf_25d DOUBLE,
    call_open_interest DOUBLE, put_open_interest DOUBLE, total_open_interest DOUBLE,
    call_volume DOUBLE, put_volume DOUBLE, put_call_oi_ratio DOUBLE, put_call_volume_ratio DOUBLE,
    max_pain_strike DOUBLE, delivery_price DOUBLE
);
