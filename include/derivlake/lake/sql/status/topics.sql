-- Per topic the lake has offsets for: its newest commit and event, what the last 1 and 24 hours
-- committed (ops.ingest_runs: one row per committed batch) and the next offset it will read in each
-- partition (-1: the log start, wherever it is when the first drain runs).
-- $now is the page's clock (UTC, naive like the ops tables).
WITH offsets AS (
    SELECT topic, count(DISTINCT partition) AS partitions,
           map_from_entries(list((partition, next_offset) ORDER BY partition)) AS next_offsets
    FROM ops.kafka_offsets
    GROUP BY topic
), runs AS (
    SELECT topic,
           max(committed_at) AS last_commit,
           max(max_event_ts) AS newest_event,
           coalesce(sum(messages) FILTER (WHERE committed_at >= $now - INTERVAL 1 HOUR), 0) AS messages_1h,
           coalesce(sum(messages) FILTER (WHERE committed_at >= $now - INTERVAL 24 HOUR), 0) AS messages_24h,
           coalesce(sum(rows) FILTER (WHERE committed_at >= $now - INTERVAL 24 HOUR), 0) AS rows_24h,
           coalesce(sum(quarantined) FILTER (WHERE committed_at >= $now - INTERVAL 24 HOUR), 0) AS quarantined_24h,
           coalesce(sum(duplicates) FILTER (WHERE committed_at >= $now - INTERVAL 24 HOUR), 0) AS duplicates_24h,
           coalesce(sum(late) FILTER (WHERE committed_at >= $now - INTERVAL 24 HOUR), 0) AS late_24h
    FROM ops.ingest_runs
    GROUP BY topic
)
SELECT o.topic, o.partitions, o.next_offsets, r.last_commit, r.newest_event,
       coalesce(r.messages_1h, 0), coalesce(r.messages_24h, 0), coalesce(r.rows_24h, 0),
       coalesce(r.quarantined_24h, 0), coalesce(r.duplicates_24h, 0), coalesce(r.late_24h, 0)
FROM offsets o LEFT JOIN runs r USING (topic)
ORDER BY o.topic
