-- Whether the day's margin report (the positions of the CFTC file) has been built.
SELECT count(*) FROM reports.margin_accounts WHERE as_of_date = {d}
