-- Every account's net position per instrument from its fills before the snapshot (08:00 UTC of D), the
-- cash those fills moved and the instrument's mark at the snapshot. Live options are marked from the
-- day's options chain (eod_margin runs on the chain asset); futures from their last ticker; expired
-- instruments settle at their delivery price, computed from the index as the chain does (so a margin
-- report does not depend on every earlier day's chain having been built).
-- Cash per fill, in the settlement currency: inverse futures trade USD amounts, so a buy of A USD at P
-- receives A / P coin of exposure (marked back at -position / mark); everything else pays amount x price.
WITH spec AS (
    -- each instrument's newest spec (sql/instrument_spec.sql)
    {instrument_spec}
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
expiry AS (
    -- every expiry at or before the snapshot that an account held an instrument of, with its index
    SELECT DISTINCT
        s.expiration,
        CASE WHEN s.inverse THEN lower(split_part(instrument_name, '-', 1)) || '_usd'
             ELSE lower(split_part(instrument_name, '-', 1)) END AS index_name
    FROM held
    WHERE NOT s.perpetual AND s.expiration <= {snapshot}
),
index_ticks AS (
    -- the expiry's business day of index ticks: the one in force at 07:30 may be older than 07:30
    SELECT
        e.index_name, e.expiration, i.timestamp, i.price,
        lead(i.timestamp) OVER (PARTITION BY e.index_name, e.expiration ORDER BY i.timestamp) AS next_ts
    FROM market.index_prices i
    JOIN expiry e
        ON i.index_name = e.index_name AND i.timestamp >= e.expiration - INTERVAL 1 DAY
        AND i.timestamp < e.expiration
    WHERE i.date <= {d}
),
settlement AS (
    -- the delivery price: the index's time-weighted average over 07:30-08:00 of the expiry day, as the
    -- chain computes it for the series expiring at its snapshot (each tick holds until the next; none
    -- without a tick inside the window)
    SELECT index_name, expiration, fsum(price * seconds) / fsum(seconds) AS delivery_price
    FROM (
        SELECT
            index_name, expiration, price, timestamp,
            date_diff(
                'microsecond', greatest(timestamp, expiration - INTERVAL 30 MINUTE), coalesce(next_ts, expiration)
            ) / 1e6 AS seconds
        FROM index_ticks
    )
    WHERE seconds > 0
    GROUP BY index_name, expiration
    HAVING bool_or(timestamp >= expiration - INTERVAL 30 MINUTE)
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
    ON st.expiration = h.s.expiration AND NOT h.s.perpetual
    AND st.index_name = CASE WHEN h.s.inverse THEN lower(split_part(h.instrument_name, '-', 1)) || '_usd'
                             ELSE lower(split_part(h.instrument_name, '-', 1)) END
ORDER BY h.account_id, h.instrument_name
