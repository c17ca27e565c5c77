-- The batch's quarantine by reason: how many, and an example as partition:offset, the first of the
-- batch (an offset alone names no message).
SELECT error, count(*), arg_min(partition || ':' || "offset", (partition, "offset"))
FROM stage_quarantine
GROUP BY error
