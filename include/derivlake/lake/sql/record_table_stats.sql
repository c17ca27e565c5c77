-- One partition's rows, files and bytes. Columns named: a lake made by an older version may hold
-- them in another order (schema_sync.py appends the columns it adds).
INSERT INTO ops.table_stats (measured_at, schema_name, table_name, partition_date, rows, files, bytes)
VALUES (?, ?, ?, ?, ?, ?, ?)
