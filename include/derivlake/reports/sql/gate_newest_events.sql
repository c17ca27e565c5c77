-- The newest committed event of business day D per Kafka partition of the gate's topics (one SELECT per
-- table the topic feeds, unioned). A partition whose newest event is at or after D 08:00 has committed
-- every message before it (per-partition order). Read from D-1 to D+1 only: a rebuild of an old date
-- reads three days, not the lake since.
SELECT kafka_topic, kafka_partition, max(timestamp) AS newest
FROM {table}
WHERE date BETWEEN {d_prev} AND {d_next} AND timestamp >= {day_start}
  AND kafka_topic IN (SELECT unnest($topics))
GROUP BY ALL
