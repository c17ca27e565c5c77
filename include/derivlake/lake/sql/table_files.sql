-- Live data files of {schema}.{name}: maintenance counts them before and after its merges, over the
-- tables it merges, so that before - merged + written = after (when no drain commits meanwhile).
SELECT count(*) FROM ducklake_list_files('lake', '{name}', schema => '{schema}')
