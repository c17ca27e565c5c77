-- One row per option series alive at the snapshot (08:00 UTC of D): its last quote at or before the
-- snapshot, the business day's trades [D-1 08:00, D 08:00), yesterday's report for the OI change and, for
-- series expiring at this snapshot, the delivery price (index TWAP over 07:30-08:00).
-- Placeholders are typed literals substituted by chain.py (literals, not parameters, so that DuckLake
-- prunes the `date` partitions: only D-1 and D are read, and file statistics prune by timestamp).
WITH quote AS (
    SELECT
        symbol,
        arg_max(
            {{
                'ts': timestamp, 'type': type, 'strike': strike_price, 'expiration': expiration,
                'open_interest': open_interest, 'bid': bid_price, 'ask': ask_price, 'bid_iv': bid_iv,
                'ask_iv': ask_iv, 'mark_price': mark_price, 'mark_iv': mark_iv, 'forward': underlying_price,
                'index_price': index_price, 'delta': delta, 'gamma': gamma, 'vega': vega, 'theta': theta,
                'rho': rho, 'state': state
            }},
            (timestamp, local_timestamp, kafka_offset)
        ) AS q
    FROM market.options_ticker
    -- {quote_from}: see chain_quote_cutoff.sql; {quote_dates}: the date partitions from there to D
    WHERE date IN ({quote_dates}) AND timestamp >= {quote_from} AND timestamp <= {snapshot}
      AND expiration >= {snapshot}
    GROUP BY symbol
),
trade AS (
    SELECT
        symbol,
        arg_min(price, (timestamp, trade_seq, id)) AS open,
        max(price) AS high,
        min(price) AS low,
        arg_max(price, (timestamp, trade_seq, id)) AS close,
        fsum(price * amount) / nullif(fsum(amount), 0) AS vwap,
        fsum(amount) AS volume,
        -- inverse prices are in coin: contracts x price x index; linear USDC prices are already in USD(C)
        fsum(amount * price * CASE WHEN contains(split_part(symbol, '-', 1), '_') THEN 1 ELSE index_price END)
            AS volume_usd,
        count(*) AS trade_count,
        coalesce(fsum(amount) FILTER (WHERE block_trade_id IS NOT NULL), 0) AS block_volume,
        count(*) FILTER (WHERE block_trade_id IS NOT NULL) AS block_trade_count
    FROM market.trades
    WHERE date IN ({d_prev}, {d}) AND timestamp >= {day_start} AND timestamp < {snapshot}
      AND regexp_matches(symbol, '-[CP]$')
    GROUP BY symbol
),
prev AS (
    SELECT symbol, open_interest FROM reports.options_chain WHERE as_of_date = {d_prev}
),
index_ticks AS (
    SELECT
        index_name, timestamp, price,
        lead(timestamp) OVER (PARTITION BY index_name ORDER BY timestamp) AS next_ts
    FROM market.index_prices
    WHERE date IN ({d_prev}, {d}) AND timestamp >= {day_start} AND timestamp < {snapshot}
),
twap AS (
    -- step function of the index: each tick holds until the next one (the last until 08:00); the tick
    -- in force at 07:30 counts from 07:30. An index with no tick inside 07:30-08:00 has no delivery price:
    -- a tick of hours before (the feed stopped) carried over the window is not its TWAP
    SELECT index_name, fsum(price * seconds) / fsum(seconds) AS delivery_price
    FROM (
        SELECT
            index_name, price, timestamp,
            date_diff('microsecond', greatest(timestamp, {twap_start}), coalesce(next_ts, {snapshot}))
                / 1e6 AS seconds
        FROM index_ticks
    )
    WHERE seconds > 0
    GROUP BY index_name
    HAVING bool_or(timestamp >= {twap_start})
),
chain AS (
    SELECT
        quote.symbol,
        split_part(quote.symbol, '-', 1) AS underlying,
        split_part(split_part(quote.symbol, '-', 1), '_', 1) AS base_currency,
        NOT contains(split_part(quote.symbol, '-', 1), '_') AS is_inverse,
        q.expiration, q.type AS option_type, q.strike, q.ts AS quote_ts, q.state,
        q.open_interest, q.forward, q.index_price,
        nullif(q.bid, 0) AS bid, nullif(q.ask, 0) AS ask,
        nullif(q.bid_iv, 0) AS bid_iv, nullif(q.ask_iv, 0) AS ask_iv,
        q.mark_price, q.mark_iv, q.delta, q.gamma, q.vega, q.theta, q.rho
    FROM quote
)
SELECT
    {d} AS as_of_date,
    {snapshot} AS snapshot_ts,
    c.underlying, c.base_currency, c.is_inverse, c.symbol, c.expiration, c.option_type, c.strike,
    date_diff('microsecond', {snapshot}, c.expiration) / 86400e6 AS days_to_expiry,
    c.quote_ts,
    date_diff('microsecond', c.quote_ts, {snapshot}) / 1e6 AS quote_age_s,
    c.state,
    t.open, t.high, t.low, t.close, t.vwap,
    coalesce(t.volume, 0) AS volume, coalesce(t.volume_usd, 0) AS volume_usd,
    coalesce(t.trade_count, 0) AS trade_count, coalesce(t.block_volume, 0) AS block_volume,
    coalesce(t.block_trade_count, 0) AS block_trade_count,
    c.open_interest,
    p.open_interest AS open_interest_prev,
    c.open_interest - p.open_interest AS open_interest_change,
    c.forward, c.index_price,
    c.forward / nullif(c.index_price, 0) - 1 AS basis,
    ln(c.strike / nullif(c.forward, 0)) AS log_moneyness,
    c.bid, c.ask,
    CASE WHEN c.bid IS NOT NULL AND c.ask IS NOT NULL THEN (c.bid + c.ask) / 2 END AS mid,
    c.ask - c.bid AS spread,
    c.bid_iv, c.ask_iv,
    c.mark_price,
    CASE WHEN c.is_inverse THEN c.mark_price * c.forward ELSE c.mark_price END AS mark_price_usd,
    c.mark_iv,
    c.delta, c.gamma, c.vega, c.theta, c.rho,
    -- time to expiry of the quote itself: the exchange's greeks are as of the quote's timestamp
    date_diff('microsecond', c.quote_ts, c.expiration) / 1e6 AS quote_tte_s,
    c.expiration = {snapshot} AS is_expiring,
    CASE WHEN c.is_inverse THEN lower(c.underlying) || '_usd' ELSE lower(c.underlying) END AS delivery_index,
    CASE WHEN c.expiration = {snapshot} THEN w.delivery_price END AS delivery_price
FROM chain c
LEFT JOIN trade t USING (symbol)
LEFT JOIN prev p USING (symbol)
LEFT JOIN twap w
    ON w.index_name = CASE WHEN c.is_inverse THEN lower(c.underlying) || '_usd' ELSE lower(c.underlying) END
ORDER BY c.underlying, c.expiration, c.strike, c.option_type
