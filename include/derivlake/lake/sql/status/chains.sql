-- The newest end-of-day options chains in the lake (reports.options_chain exists once one was built).
SELECT as_of_date, count(*) AS series, count(DISTINCT underlying) AS underlyings, max(snapshot_ts) AS snapshot
FROM reports.options_chain
GROUP BY as_of_date
ORDER BY as_of_date DESC
LIMIT 7
