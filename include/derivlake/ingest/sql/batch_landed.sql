-- Whether a batch is committed: its ops.ingest_runs record is written in the batch's own transaction.
-- The offsets it moved tell it from an earlier Airflow try's batch of the same number (same run id).
SELECT count(*)
FROM ops.ingest_runs
WHERE run_id = ? AND topic = ? AND batch_no = ? AND offsets = ?
