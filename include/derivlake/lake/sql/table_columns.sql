-- Every column of the current database's tables, in table order, with its DuckDB type.
SELECT schema_name || '.' || table_name, column_name, data_type
FROM duckdb_columns()
WHERE database_name = current_database()
ORDER BY schema_name, table_name, column_index
