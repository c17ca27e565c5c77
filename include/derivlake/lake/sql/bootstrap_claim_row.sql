-- The one row drains update to claim the creation of offset rows (ops.offset_row_claims).
INSERT INTO ops.offset_row_claims (claimed_at, run_id) VALUES (now()::TIMESTAMP, 'bootstrap')
