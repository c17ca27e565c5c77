-- One committed chunk of a quarantine replay.
INSERT INTO ops.quarantine_replays (
    run_id, topic, replayed_at, examined, released, rows, duplicates, still_quarantined
)
VALUES (?, ?, now()::TIMESTAMP, ?, ?, ?, ?, ?)
