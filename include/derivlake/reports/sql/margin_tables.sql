-- The margin report's tables (eod_margin). One row per account x margin currency x model (standard,
-- portfolio, span), and one per open position; a rerun of a date replaces that date's rows in one
-- transaction (margin.py). grid_loss: the worst loss of the model's scenarios (27 + 8 portfolio, 16 SPAN);
-- extended_addon: the portfolio model's tail charge; spread_charge, short_option_minimum,
-- net_option_value: SPAN's components.
CREATE SCHEMA IF NOT EXISTS reports;

CREATE TABLE IF NOT EXISTS reports.margin_accounts (
    as_of_date DATE, as_of TIMESTAMP, account_id VARCHAR, currency VARCHAR, model VARCHAR,
    equity DOUBLE, initial_margin DOUBLE, maintenance_margin DOUBLE, available_funds DOUBLE,
    im_utilisation DOUBLE, mm_utilisation DOUBLE, margin_call BOOLEAN,
    worst_scenario_id INTEGER, worst_scenario_pnl DOUBLE, grid_loss DOUBLE, extended_addon DOUBLE,
    spread_charge DOUBLE, short_option_minimum DOUBLE, net_option_value DOUBLE,
    positions BIGINT, unpriced_positions BIGINT,
    delta_total DOUBLE, gamma_total DOUBLE, vega_total DOUBLE, theta_total DOUBLE,
    deposits DOUBLE, fees DOUBLE, cash_flows DOUBLE, position_value DOUBLE
);

CREATE TABLE IF NOT EXISTS reports.margin_positions (
    as_of_date DATE, account_id VARCHAR, currency VARCHAR, underlying VARCHAR, instrument_name VARCHAR,
    kind VARCHAR, is_inverse BOOLEAN, status VARCHAR, expiration TIMESTAMP, strike DOUBLE, option_type VARCHAR,
    position DOUBLE, size_base DOUBLE, fills BIGINT, mark_price DOUBLE, forward DOUBLE, index_price DOUBLE,
    mark_iv DOUBLE, delivery_price DOUBLE, cash_flow DOUBLE, value DOUBLE,
    standard_im DOUBLE, standard_mm DOUBLE, delta DOUBLE, gamma DOUBLE, vega DOUBLE, theta DOUBLE
);
