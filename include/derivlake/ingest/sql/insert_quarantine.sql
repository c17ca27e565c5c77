-- A batch's quarantined messages, with the time and the run that quarantined them.
INSERT INTO ops.quarantine BY NAME
SELECT *, now()::TIMESTAMP AS quarantined_at, ? AS run_id
FROM stage_quarantine
