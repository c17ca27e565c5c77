-- Book depth of $symbol at $ts within 1% of the mid: rebuild the book from the last snapshot at or
-- before $ts plus the changes after it (the latest amount per side and price wins; 0 deletes). $ts is
-- UTC unless it carries an offset (`2026-11-24T09:00:00+01:00` is 08:00 UTC; a cast to TIMESTAMP dropped
-- the offset). Depth is in the book's amount: USD for inverse futures and perpetuals, coin otherwise.
WITH msgs AS (
    SELECT * FROM market.book_l2
    WHERE symbol = $symbol
      AND date IN (timezone('UTC', $ts::TIMESTAMPTZ)::DATE - 1, timezone('UTC', $ts::TIMESTAMPTZ)::DATE)
      AND timestamp <= timezone('UTC', $ts::TIMESTAMPTZ)
), start AS (
    SELECT max(change_id) AS snapshot_id FROM msgs WHERE is_snapshot
), levels AS (
    SELECT side, price, arg_max(amount, change_id) AS amount
    FROM msgs, start
    WHERE msgs.change_id >= start.snapshot_id
    GROUP BY side, price
), book AS (
    SELECT * FROM levels WHERE amount > 0
), mid AS (
    SELECT (max(price) FILTER (WHERE side = 'bid') + min(price) FILTER (WHERE side = 'ask')) / 2 AS mid FROM book
)
SELECT side, count(*) AS levels, round(sum(amount), 4) AS depth, min(price) AS low, max(price) AS high,
       round(any_value(mid), 6) AS mid
FROM book, mid
WHERE abs(price / mid - 1) <= 0.01
GROUP BY side
ORDER BY side
