-- How many rows a report table holds for a business day: whether that day's report was built (the
-- margin report needs the day's chain, the regulatory files the day's margin report).
SELECT count(*) FROM reports.{table} WHERE as_of_date = ?
