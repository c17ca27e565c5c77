-- Every table of the lake: its live data files now (DuckLake's catalog), and its rows, partitions and
-- newest partition as the newest maintenance measured them (ops.table_stats; NULL until it has run).
WITH live AS (
    SELECT s.schema_name || '.' || i.table_name AS tbl, i.file_count AS files, i.file_size_bytes AS bytes
    FROM ducklake_table_info('lake') i
    JOIN __ducklake_metadata_lake.ducklake_schema s ON s.schema_id = i.schema_id AND s.end_snapshot IS NULL
), newest AS (
    SELECT schema_name, table_name, max(measured_at) AS measured_at
    FROM ops.table_stats
    GROUP BY ALL
), measured AS (
    SELECT s.schema_name || '.' || s.table_name AS tbl, sum(s.rows) AS rows,
           count(s.partition_date) AS partitions, max(s.partition_date) AS newest_partition, n.measured_at
    FROM ops.table_stats s
    JOIN newest n USING (schema_name, table_name, measured_at)
    GROUP BY ALL
)
SELECT tbl, files, bytes, m.rows, m.partitions, m.newest_partition, m.measured_at
FROM live LEFT JOIN measured m USING (tbl)
ORDER BY tbl
