SELECT
    t.index_name, ms_ts(t.timestamp) AS timestamp, us_ts(received_at_us) AS local_timestamp, t.price,
    CAST(ms_ts(t.timestamp) AS DATE) AS date, kafka_topic, kafka_partition, kafka_offset
FROM good
