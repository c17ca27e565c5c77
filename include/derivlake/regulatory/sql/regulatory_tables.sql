-- What was filed: every file generated (a day's sequence 1, 2, ... per report) and, per RTS 22 transaction,
-- each action filed (NEW, later CXL) with a hash of its content, so a rerun that finds different fills
-- emits cancellations plus new records instead of rewriting a filed report. Rows are only ever added.
CREATE SCHEMA IF NOT EXISTS reports;

CREATE TABLE IF NOT EXISTS reports.regulatory_files (
    as_of_date DATE, report VARCHAR, sequence INTEGER, file_name VARCHAR, sha256 VARCHAR, records BIGINT,
    new_records BIGINT, cancelled_records BIGINT, generated_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS reports.rts22_filed (
    as_of_date DATE, sequence INTEGER, action VARCHAR, tx_id VARCHAR, content_hash VARCHAR
);
