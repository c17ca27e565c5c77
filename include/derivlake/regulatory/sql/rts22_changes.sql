-- What the next sequence files, given the day's transactions now and its filing log: a cancellation of
-- each standing transaction (last filed as NEW) that is gone or whose content changed, and a new record of
-- each transaction that does not stand with its present content. A sequence files its cancellations
-- before its new records, so a transaction's last action is that of its highest sequence, NEW over CXL.
INSERT INTO {actions} (action, tx_id, content_hash)
WITH last AS (
    SELECT tx_id, action, content_hash
    FROM reports.rts22_filed
    WHERE as_of_date = $1
    QUALIFY row_number() OVER (PARTITION BY tx_id ORDER BY sequence DESC, action = 'NEW' DESC) = 1
), standing AS (
    SELECT tx_id, content_hash FROM last WHERE action = 'NEW'
)
SELECT 'CXL', s.tx_id, NULL
FROM standing s
WHERE NOT EXISTS (SELECT 1 FROM {current} c WHERE c.tx_id = s.tx_id AND c.content_hash = s.content_hash)
UNION ALL
SELECT 'NEW', c.tx_id, c.content_hash
FROM {current} c
WHERE NOT EXISTS (SELECT 1 FROM standing s WHERE s.tx_id = c.tx_id AND s.content_hash = c.content_hash)
