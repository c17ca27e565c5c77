-- A batch's quarantined messages, with the time and the run that quarantined them.
INSERT INTO ops.quarantine
SELECT *, now()::TIMESTAMP, ?
FROM stage_quarantine
