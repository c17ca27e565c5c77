-- The actions a filed sequence holds, to render its file again byte for byte.
INSERT INTO {actions} (action, tx_id, content_hash)
SELECT action, tx_id, content_hash
FROM reports.rts22_filed
WHERE as_of_date = $1 AND sequence = $2
