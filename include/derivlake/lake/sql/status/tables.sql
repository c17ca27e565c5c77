-- Each table's size as the newest maintenance measured it (ops.table_stats), beside its live files now.
WITH newest AS (
    SELECT schema_name, table_name, max(measured_at) AS measured_at
    FROM ops.table_stats
    GROUP BY ALL
)
SELECT s.schema_name || '.' || s.table_name AS tbl, n.measured_at,
       sum(s.rows) AS rows, sum(s.files) AS files, sum(s.bytes) AS bytes,
       count(s.partition_date) AS partitions, max(s.partition_date) AS newest_partition
FROM ops.table_stats s
JOIN newest n ON n.schema_name = s.schema_name AND n.table_name = s.table_name AND n.measured_at = s.measured_at
GROUP BY ALL
ORDER BY tbl
