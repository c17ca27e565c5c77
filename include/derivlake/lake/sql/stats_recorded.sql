-- Whether a maintenance run's table stats are committed: looked up after the catalog connection
-- dropped during their commit, which the catalog may have applied.
SELECT count(*)
FROM ops.table_stats
WHERE measured_at = ?
