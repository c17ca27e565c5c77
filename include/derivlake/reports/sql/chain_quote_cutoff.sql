-- The oldest "last quote" of any series alive at the snapshot. Every series' last quote is at or after it,
-- so chain_snapshot.sql reads quotes from here on only: with fresh quotes (a ticker every few seconds) that
-- is the last seconds of the day, pruned by file and row-group timestamp statistics instead of a full scan.
SELECT min(last_ts)
FROM (
    SELECT symbol, max(timestamp) AS last_ts
    FROM market.options_ticker
    WHERE date IN ({d_prev}, {d}) AND timestamp >= {day_start} AND timestamp <= {snapshot}
      AND expiration >= {snapshot}
    GROUP BY symbol
)
