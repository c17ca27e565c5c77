-- The chunk's messages still quarantined, with the reason today's normalizer gives where it changed.
UPDATE ops.quarantine AS q SET error = s.error
FROM stage_quarantine AS s
WHERE q.topic = $topic AND q.partition = s.partition AND q."offset" = s."offset" AND q.error <> s.error
