-- Helpers shared by the projections (temporary: they live in the session, not the lake).
CREATE OR REPLACE TEMP MACRO ms_ts(ms) AS make_timestamp(CAST(ms AS BIGINT) * 1000);
CREATE OR REPLACE TEMP MACRO us_ts(us) AS make_timestamp(CAST(us AS BIGINT));
-- Deribit names: BTC-27DEC24-100000-C, SOL_USDC-29MAY26-8d6-P ('d' is the decimal point).
CREATE OR REPLACE TEMP MACRO deribit_strike(name) AS TRY_CAST(replace(split_part(name, '-', 3), 'd', '.') AS DOUBLE);
CREATE OR REPLACE TEMP MACRO deribit_expiry(name) AS
    try_strptime(split_part(name, '-', 2), '%d%b%y') + INTERVAL 8 HOUR;
