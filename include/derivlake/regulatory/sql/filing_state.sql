-- A filing's per-transaction state (filing_state.py): the day's transactions as they are now, and the
-- actions of the sequence being rendered. In-memory tables, spilled beyond DuckDB's memory limit.
CREATE TABLE {current} (tx_id VARCHAR, content_hash VARCHAR);
CREATE TABLE {actions} (action VARCHAR, tx_id VARCHAR, content_hash VARCHAR);
