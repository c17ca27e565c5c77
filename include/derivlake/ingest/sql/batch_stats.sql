-- Counts of one output: rows, late messages (event date before receive date), event-time range,
-- and the partition dates it writes.
-- {late} counts rows when each message is one row, else distinct messages.
SELECT count(*) AS rows,
       {late} FILTER (WHERE date < CAST(local_timestamp AS DATE)) AS late,
       min({ts}) AS min_ts, max({ts}) AS max_ts, list(DISTINCT date) AS dates
FROM {stage}
