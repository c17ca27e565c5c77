-- The raw bytes of a batch's bad messages, found again by their offsets, shaped as ops.quarantine
-- (less the run's own columns).
SELECT r.kafka_topic AS topic, r.kafka_partition AS partition, r.kafka_offset AS "offset", r.key,
       r.value AS raw_value, p.reason AS error, make_timestamp(r.received_at_us) AS received_at
FROM raw_batch r
JOIN (SELECT kafka_partition, kafka_offset, reason FROM parsed WHERE reason IS NOT NULL) p
  USING (kafka_partition, kafka_offset)
ORDER BY r.kafka_partition, r.kafka_offset
