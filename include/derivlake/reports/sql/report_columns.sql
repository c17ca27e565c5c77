-- A reports table's columns, in table order.
SELECT column_name
FROM duckdb_columns()
WHERE database_name = current_database() AND schema_name = 'reports' AND table_name = ?
ORDER BY column_index
