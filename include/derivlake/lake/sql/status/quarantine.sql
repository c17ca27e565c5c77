-- Quarantined messages of the last 24 hours by topic and reason (an unknown or malformed instrument's
-- name is cut off, so that one reason is one row), with the newest example to look up in ops.quarantine.
SELECT topic,
       CASE WHEN starts_with(error, 'unknown_instrument:') OR starts_with(error, 'malformed_instrument:')
            THEN split_part(error, ':', 1) ELSE error END AS reason,
       count(*) AS messages,
       arg_max(partition || ':' || "offset", quarantined_at) AS example,
       max(quarantined_at) AS last_at
FROM ops.quarantine
WHERE quarantined_at >= $now - INTERVAL 24 HOUR
GROUP BY ALL
ORDER BY messages DESC, topic, reason
