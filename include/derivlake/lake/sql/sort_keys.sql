-- Current sort keys of every table ("schema.table" -> "key, key"), read from the DuckLake metadata
-- catalog (format 1.0 tables ducklake_sort_info / ducklake_sort_expression), so that maintenance alters
-- a table's sort order only when it differs: each ALTER is a snapshot that races the drains.
SELECT s.schema_name || '.' || t.table_name AS table_name,
       string_agg(replace(e.expression, '"', '') || CASE WHEN e.sort_direction = 'DESC' THEN ' DESC' ELSE '' END,
                  ', ' ORDER BY e.sort_key_index) AS sort_keys
FROM __ducklake_metadata_lake.ducklake_sort_info i
JOIN __ducklake_metadata_lake.ducklake_sort_expression e ON e.sort_id = i.sort_id AND e.table_id = i.table_id
JOIN __ducklake_metadata_lake.ducklake_table t ON t.table_id = i.table_id AND t.end_snapshot IS NULL
JOIN __ducklake_metadata_lake.ducklake_schema s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL
WHERE i.end_snapshot IS NULL
GROUP BY ALL
