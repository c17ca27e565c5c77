-- (measured_at, schema_name, table_name, partition_date, rows, files, bytes) of one partition.
INSERT INTO ops.table_stats VALUES (?, ?, ?, ?, ?, ?, ?)
