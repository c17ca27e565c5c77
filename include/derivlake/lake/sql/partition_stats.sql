-- Per date partition of {schema}.{name}: rows, live data files and their bytes.
WITH f AS (
    SELECT TRY_CAST(regexp_extract(data_file, 'date=([0-9-]+)', 1) AS DATE) AS date,
           count(*) AS files, sum(data_file_size_bytes) AS bytes
    FROM ducklake_list_files('lake', '{name}', schema => '{schema}')
    GROUP BY ALL
), r AS (
    SELECT date, count(*) AS rows FROM {schema}.{name} GROUP BY date
)
SELECT f.date, coalesce(r.rows, 0), f.files, f.bytes
FROM f LEFT JOIN r USING (date)
ORDER BY f.date
