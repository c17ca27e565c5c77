-- The newest regulatory files filed (reports.regulatory_files exists once the first was filed).
SELECT as_of_date, report, sequence, file_name, records, new_records, cancelled_records, generated_at
FROM reports.regulatory_files
ORDER BY as_of_date DESC, generated_at DESC, report
LIMIT 10
