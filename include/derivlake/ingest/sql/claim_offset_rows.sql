-- Touch the lake's one claim row, so that two drains creating offset rows at once conflict and the
-- second retries (their inserts alone would both commit on a Postgres catalog). Returns the rows
-- updated: 0 means the claim row is gone.
UPDATE ops.offset_row_claims
SET claimed_at = now()::TIMESTAMP, run_id = ?
