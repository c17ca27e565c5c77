-- Every account's net position per instrument from its fills before the snapshot (08:00 UTC of D), the
-- cash those fills moved and the instrument's mark at the snapshot. Live options are marked from the
-- day's options chain (eod_margin runs on the chain asset); futures from their last ticker; expired
-- instruments settle at the delivery price their expiry day's chain recorded.
-- Cash per fill, in the settlement currency: inverse futures trade USD amounts, so a buy of A USD at P
-- receives A / P coin of exposure (marked back at -position / mark); everything else pays amount x price.
WITH spec AS (
    SELECT
        instrument_name,
        arg_max(
            {{
                'kind': kind, 'base': base_currency, 'currency': settlement_currency,
                'inverse': instrument_type = 'reversed', 'strike': strike, 'option_type': option_type,
                'expiration': expiration_ts, 'perpetual': settlement_period = 'perpetual'
            }},
            valid_from
        ) AS s
    FROM market.instruments
    WHERE valid_from <= {snapshot}
    GROUP BY instrument_name
),
fill AS (
    SELECT
        f.account_id, f.instrument_name, s,
        CASE f.direction WHEN 'buy' THEN f.amount ELSE -f.amount END AS signed, f.price
    FROM desk.fills f
    LEFT JOIN spec USING (instrument_name)
    WHERE f.date <= {d} AND f.timestamp < {snapshot}
),
held AS (
    SELECT
        account_id, instrument_name, any_value(s) AS s,
        fsum(signed) AS position,
        fsum(CASE WHEN s.inverse AND s.kind = 'future' THEN signed / price ELSE -signed * price END)
            AS cash_flow,
        count(*) AS fills
    FROM fill
    GROUP BY account_id, instrument_name
),
future_mark AS (
    SELECT symbol AS instrument_name, arg_max({{'mark': mark_price, 'index': index_price}}, timestamp) AS m
    FROM market.derivative_ticker
    WHERE date IN ({d_prev}, {d}) AND timestamp <= {snapshot}
    GROUP BY symbol
),
option_mark AS (
    SELECT
        symbol AS instrument_name, mark_price, forward, index_price, mark_iv, delta, gamma, vega, theta
    FROM reports.options_chain
    WHERE as_of_date = {d} AND NOT is_expiring
),
settlement AS (
    SELECT underlying, expiration, any_value(delivery_price) AS delivery_price
    FROM reports.options_chain
    WHERE is_expiring AND as_of_date <= {d} AND delivery_price IS NOT NULL
    GROUP BY underlying, expiration
)
SELECT
    h.account_id, h.instrument_name,
    h.s.kind AS kind, h.s.base AS base_currency, h.s.inverse AS is_inverse,
    -- an instrument without a spec still belongs to an account currency: its name's (BTC-..., SOL_USDC-...)
    coalesce(
        h.s.currency,
        CASE WHEN contains(split_part(h.instrument_name, '-', 1), '_')
             THEN split_part(split_part(h.instrument_name, '-', 1), '_', 2)
             ELSE split_part(h.instrument_name, '-', 1) END
    ) AS currency,
    split_part(h.instrument_name, '-', 1) AS underlying,
    CASE WHEN NOT h.s.perpetual THEN h.s.expiration END AS expiration,
    h.s.strike AS strike, h.s.option_type AS option_type,
    h.position, h.cash_flow, h.fills,
    coalesce(o.mark_price, fm.m.mark) AS mark_price,
    coalesce(o.forward, fm.m.mark) AS forward,
    coalesce(o.index_price, fm.m.index) AS index_price,
    o.mark_iv, o.delta, o.gamma, o.vega, o.theta,
    st.delivery_price,
    date_diff('microsecond', {snapshot}, h.s.expiration) / 86400e6 AS days_to_expiry
FROM held h
LEFT JOIN option_mark o ON o.instrument_name = h.instrument_name AND h.s.kind = 'option'
LEFT JOIN future_mark fm ON fm.instrument_name = h.instrument_name AND h.s.kind = 'future'
LEFT JOIN settlement st
    ON st.underlying = split_part(h.instrument_name, '-', 1) AND st.expiration = h.s.expiration
    AND NOT h.s.perpetual AND h.s.expiration <= {snapshot}
ORDER BY h.account_id, h.instrument_name
