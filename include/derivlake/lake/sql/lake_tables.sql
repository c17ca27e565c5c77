-- Every table of the attached lake as schema.table, ops tables too.
SELECT schema_name || '.' || table_name
FROM duckdb_tables()
WHERE database_name = ?
ORDER BY 1
