SELECT
    t.account_id, t.transfer_id, t.currency, t.amount, ms_ts(t.timestamp) AS timestamp,
    us_ts(received_at_us) AS local_timestamp,
    CAST(ms_ts(t.timestamp) AS DATE) AS date, kafka_topic, kafka_partition, kafka_offset
FROM good
