-- What the quarantine holds, by topic and reason. An unknown instrument's reason is cut to the currency
-- its name starts with (`unknown_instrument:HYPE`): the code DERIVLAKE_EXTRA_CURRENCIES would take.
SELECT topic,
       CASE WHEN starts_with(error, 'unknown_instrument:')
            THEN 'unknown_instrument:' || upper(regexp_extract(error[20:], '^[A-Za-z0-9]*'))
            ELSE error END AS reason,
       count(*) AS messages,
       min(quarantined_at) AS first_at,
       max(quarantined_at) AS last_at,
       arg_max(partition || ':' || "offset", quarantined_at) AS example
FROM ops.quarantine
WHERE list_contains($topics, topic)
GROUP BY ALL
ORDER BY messages DESC, topic, reason
