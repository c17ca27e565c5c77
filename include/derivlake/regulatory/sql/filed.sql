-- A day's filing log, oldest first: the files, and the RTS 22 actions.
SELECT report, sequence, file_name, sha256, records, new_records, cancelled_records, generated_at
FROM reports.regulatory_files
WHERE as_of_date = {d}
ORDER BY report, sequence
