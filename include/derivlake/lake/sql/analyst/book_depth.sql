-- Book depth of $symbol at $ts within 1% of the mid: rebuild the book from the last snapshot at or
-- before $ts plus the changes after it (the latest amount per side and price wins; 0 deletes). $ts is
-- UTC unless it carries an offset (`2026-11-24T09:00:00+01:00` is 08:00 UTC; a cast to TIMESTAMP dropped
-- the offset). Depth is in the book's amount: USD for inverse futures and perpetuals, coin otherwise.
-- The last snapshot may be days old (a live feed gets one only when it subscribes): the changes are read
-- from its date on; until 2026-12-03 only $ts's day and the day before were, and such a book had no rows.
WITH t AS (
    SELECT timezone('UTC', $ts::TIMESTAMPTZ) AS ts
), start AS (
    SELECT arg_max(change_id, timestamp) AS snapshot_id, max(timestamp) AS at
    FROM market.book_l2, t
    WHERE symbol = $symbol AND is_snapshot AND date <= t.ts::DATE AND timestamp <= t.ts
), msgs AS (
    SELECT book_l2.* FROM market.book_l2, t, start
    WHERE symbol = $symbol AND date BETWEEN start.at::DATE AND t.ts::DATE
      AND timestamp BETWEEN start.at AND t.ts AND change_id >= start.snapshot_id
), levels AS (
    SELECT side, price, arg_max(amount, change_id) AS amount
    FROM msgs
    WHERE side IS NOT NULL
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
