SELECT sequence, action, tx_id, content_hash
FROM reports.rts22_filed
WHERE as_of_date = {d}
ORDER BY sequence, action = 'NEW', tx_id
