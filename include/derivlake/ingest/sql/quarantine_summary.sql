-- What the quarantine holds, by topic and reason. An unknown instrument's reason is cut to the currency
-- its name starts with (`unknown_instrument:HYPE`): the code DERIVLAKE_EXTRA_CURRENCIES would take. A
-- malformed name's is grouped the same way and shows one of its names and how many others there are, so
-- a feed that renames every series (decimal strikes, say) is a row per currency, not one per name.
WITH quarantined AS (
    SELECT *,
           CASE WHEN starts_with(error, 'unknown_instrument:')
                THEN 'unknown_instrument:' || upper(regexp_extract(error[20:], '^[A-Za-z0-9]*'))
                WHEN starts_with(error, 'malformed_instrument:')
                THEN 'malformed_instrument:' || upper(regexp_extract(error[22:], '^[A-Za-z0-9]*'))
                ELSE error END AS grouped
    FROM ops.quarantine
    WHERE list_contains($topics, topic)
)
SELECT topic,
       CASE WHEN NOT starts_with(grouped, 'malformed_instrument:') THEN grouped
            WHEN count(DISTINCT error) = 1 THEN min(error)
            ELSE min(error) || ' (and ' || (count(DISTINCT error) - 1) || ' more names)' END AS reason,
       count(*) AS messages,
       min(quarantined_at) AS first_at,
       max(quarantined_at) AS last_at,
       arg_max(partition || ':' || "offset", quarantined_at) AS example
FROM quarantined
GROUP BY topic, grouped
ORDER BY messages DESC, topic, reason
