-- The lake's tables (domain.md section 2). Idempotent: run on every open of a writable lake.
-- Timestamps are TIMESTAMP in UTC with microsecond precision. `date` is the UTC date of `timestamp`
-- and the Hive partition key. Every row keeps its Kafka provenance (kafka_topic, kafka_partition,
-- kafka_offset) so that duplicates and gaps can be audited.
CREATE SCHEMA IF NOT EXISTS market;
CREATE SCHEMA IF NOT EXISTS desk;
CREATE SCHEMA IF NOT EXISTS reports;
CREATE SCHEMA IF NOT EXISTS ops;

CREATE TABLE IF NOT EXISTS market.instruments (
    exchange VARCHAR, instrument_name VARCHAR, kind VARCHAR,
    base_currency VARCHAR, quote_currency VARCHAR, settlement_currency VARCHAR, counter_currency VARCHAR,
    instrument_type VARCHAR, option_type VARCHAR, strike DOUBLE,
    expiration_ts TIMESTAMP, creation_ts TIMESTAMP, settlement_period VARCHAR,
    contract_size DOUBLE, tick_size DOUBLE, min_trade_amount DOUBLE, price_index VARCHAR, is_active BOOLEAN,
    maker_commission DOUBLE, taker_commission DOUBLE, block_trade_commission DOUBLE,
    valid_from TIMESTAMP, local_timestamp TIMESTAMP, date DATE,
    kafka_topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT
);

CREATE TABLE IF NOT EXISTS market.trades (
    exchange VARCHAR, symbol VARCHAR, timestamp TIMESTAMP, local_timestamp TIMESTAMP, id VARCHAR,
    side VARCHAR, price DOUBLE, amount DOUBLE,
    trade_seq BIGINT, index_price DOUBLE, mark_price DOUBLE, iv DOUBLE, liquidation VARCHAR,
    block_trade_id VARCHAR, tick_direction INTEGER, date DATE,
    kafka_topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT
);

CREATE TABLE IF NOT EXISTS market.book_l2 (
    exchange VARCHAR, symbol VARCHAR, timestamp TIMESTAMP, local_timestamp TIMESTAMP, is_snapshot BOOLEAN,
    side VARCHAR, price DOUBLE, amount DOUBLE, change_id BIGINT, prev_change_id BIGINT, date DATE,
    kafka_topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT
);

CREATE TABLE IF NOT EXISTS market.derivative_ticker (
    exchange VARCHAR, symbol VARCHAR, timestamp TIMESTAMP, local_timestamp TIMESTAMP,
    funding_timestamp TIMESTAMP, funding_rate DOUBLE, predicted_funding_rate DOUBLE, open_interest DOUBLE,
    last_price DOUBLE, index_price DOUBLE, mark_price DOUBLE,
    best_bid_price DOUBLE, best_ask_price DOUBLE, funding_8h DOUBLE, current_funding DOUBLE,
    settlement_price DOUBLE, estimated_delivery_price DOUBLE, date DATE,
    kafka_topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT
);

CREATE TABLE IF NOT EXISTS market.options_ticker (
    exchange VARCHAR, symbol VARCHAR, timestamp TIMESTAMP, local_timestamp TIMESTAMP,
    type VARCHAR, strike_price DOUBLE, expiration TIMESTAMP, open_interest DOUBLE, last_price DOUBLE,
    bid_price DOUBLE, bid_amount DOUBLE, bid_iv DOUBLE, ask_price DOUBLE, ask_amount DOUBLE, ask_iv DOUBLE,
    mark_price DOUBLE, mark_iv DOUBLE, underlying_index VARCHAR, underlying_price DOUBLE,
    delta DOUBLE, gamma DOUBLE, vega DOUBLE, theta DOUBLE, rho DOUBLE,
    index_price DOUBLE, interest_rate DOUBLE, settlement_price DOUBLE, estimated_delivery_price DOUBLE,
    volume DOUBLE, volume_usd DOUBLE, state VARCHAR, date DATE,
    kafka_topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT
);

CREATE TABLE IF NOT EXISTS market.index_prices (
    index_name VARCHAR, timestamp TIMESTAMP, local_timestamp TIMESTAMP, price DOUBLE, date DATE,
    kafka_topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT
);

CREATE TABLE IF NOT EXISTS desk.fills (
    account_id VARCHAR, trade_id VARCHAR, order_id VARCHAR, instrument_name VARCHAR, timestamp TIMESTAMP,
    local_timestamp TIMESTAMP, direction VARCHAR, price DOUBLE, amount DOUBLE, liquidity VARCHAR, fee DOUBLE,
    fee_currency VARCHAR, order_type VARCHAR, iv DOUBLE, underlying_price DOUBLE, index_price DOUBLE,
    mark_price DOUBLE, label VARCHAR, reduce_only BOOLEAN, post_only BOOLEAN, profit_loss DOUBLE,
    block_trade_id VARCHAR, date DATE,
    kafka_topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT
);

CREATE TABLE IF NOT EXISTS desk.transfers (
    account_id VARCHAR, transfer_id VARCHAR, currency VARCHAR, amount DOUBLE, timestamp TIMESTAMP,
    local_timestamp TIMESTAMP, date DATE,
    kafka_topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT
);

CREATE TABLE IF NOT EXISTS ops.kafka_offsets (
    topic VARCHAR, partition INTEGER, next_offset BIGINT, updated_at TIMESTAMP, run_id VARCHAR
);

-- One row, updated by every transaction that creates or repairs offset rows. On a Postgres catalog
-- DuckLake commits two inserts into one table side by side, so two drains starting on a new topic at
-- once each inserted its rows; with both updating this row, the second conflicts, retries, and finds
-- the rows made. (bootstrap inserts the row.)
CREATE TABLE IF NOT EXISTS ops.offset_row_claims (claimed_at TIMESTAMP, run_id VARCHAR);

-- The Kafka topic id (KIP-516) the stored offsets of each topic belong to, newest row last: a topic
-- deleted and created again under its name (or an in-memory broker restarted) has a new id, and offsets
-- of the old one mean nothing in it.
CREATE TABLE IF NOT EXISTS ops.kafka_topics (topic VARCHAR, topic_id VARCHAR, recorded_at TIMESTAMP, run_id VARCHAR);

CREATE TABLE IF NOT EXISTS ops.ingest_runs (
    run_id VARCHAR, topic VARCHAR, batch_no INTEGER, started_at TIMESTAMP, committed_at TIMESTAMP,
    messages BIGINT, rows BIGINT, bytes BIGINT, quarantined BIGINT, duplicates BIGINT, late BIGINT,
    min_event_ts TIMESTAMP, max_event_ts TIMESTAMP, offsets VARCHAR
);

CREATE TABLE IF NOT EXISTS ops.quarantine (
    topic VARCHAR, partition INTEGER, "offset" BIGINT, key BLOB, raw_value BLOB, error VARCHAR,
    received_at TIMESTAMP, quarantined_at TIMESTAMP, run_id VARCHAR
);

CREATE TABLE IF NOT EXISTS ops.offset_resets (
    topic VARCHAR, partition INTEGER, old_offset BIGINT, new_offset BIGINT, reason VARCHAR,
    messages_affected BIGINT, reset_at TIMESTAMP, run_id VARCHAR
);

CREATE TABLE IF NOT EXISTS ops.table_stats (
    measured_at TIMESTAMP, schema_name VARCHAR, table_name VARCHAR, partition_date DATE,
    rows BIGINT, files BIGINT, bytes BIGINT
);

-- Quarantined messages moved into the lake by `python -m derivlake quarantine replay`, one row per
-- committed chunk: released = examined - still_quarantined (of which `duplicates` were dropped).
CREATE TABLE IF NOT EXISTS ops.quarantine_replays (
    run_id VARCHAR, topic VARCHAR, replayed_at TIMESTAMP, examined BIGINT, released BIGINT, rows BIGINT,
    duplicates BIGINT, still_quarantined BIGINT
);
