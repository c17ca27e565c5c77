-- The second occurrence of each TxId that a file reports twice or more as the same action (New or Cxl),
-- in file order, by grouped aggregates (which DuckDB spills beyond its memory limit).
WITH repeated AS (
    SELECT action, tx_id, min(n) AS first
    FROM {tx_ids}
    GROUP BY action, tx_id
    HAVING count(*) > 1
)
SELECT arg_min(t.line, t.n) AS line, t.action, t.tx_id
FROM {tx_ids} t
JOIN repeated r ON r.action = t.action AND r.tx_id = t.tx_id AND t.n > r.first
GROUP BY t.action, t.tx_id
ORDER BY min(t.n)
