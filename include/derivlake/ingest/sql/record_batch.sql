-- A committed batch's record, in the batch's own transaction.
INSERT INTO ops.ingest_runs (
    run_id, topic, batch_no, started_at, committed_at, messages, rows, bytes, quarantined, duplicates, late,
    min_event_ts, max_event_ts, offsets
)
VALUES (?, ?, ?, ?, now()::TIMESTAMP, ?, ?, ?, ?, ?, ?, ?, ?, ?)
