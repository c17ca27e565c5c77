-- The newest committed event per Kafka partition of the gate's topics within [{since}, {until}), one
-- SELECT per table the topic feeds, unioned. A partition with an event at or after D 08:00 has
-- committed every message before it (per-partition order). Narrow windows, so that file and row-group
-- timestamp statistics prune most of the day: the gate polls every minute while it waits.
SELECT kafka_topic, kafka_partition, max(timestamp) AS newest
FROM {table}
WHERE date BETWEEN {date_from} AND {date_to} AND timestamp >= {since} AND timestamp < {until}
  AND kafka_topic IN (SELECT unnest($topics))
GROUP BY ALL
