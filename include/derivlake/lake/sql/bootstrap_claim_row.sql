-- The one row drains update to claim the creation of offset rows (ops.offset_row_claims).
INSERT INTO ops.offset_row_claims VALUES (now()::TIMESTAMP, 'bootstrap')
