-- Message-level counts of one output: rows, messages, late ones (event date before receive date).
SELECT count(*) AS rows,
       count(DISTINCT (kafka_partition, kafka_offset)) AS messages,
       count(DISTINCT (kafka_partition, kafka_offset)) FILTER (WHERE date < CAST(local_timestamp AS DATE)) AS late,
       min({ts}) AS min_ts, max({ts}) AS max_ts
FROM {stage}
