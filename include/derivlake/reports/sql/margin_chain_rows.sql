-- Whether the day's options chain (the marks of live options) has been built.
SELECT count(*) FROM reports.options_chain WHERE as_of_date = {d}
