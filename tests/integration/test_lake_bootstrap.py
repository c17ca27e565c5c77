"""The lake opens offline, in WAL mode, with its schemas, tables and partitioning."""

from __future__ import annotations

import sqlite3

import pytest

from derivlake.config import LakeSettings
from derivlake.lake.catalog import PARTITIONED_TABLES, LakeError, open_lake


def test_bootstrap_creates_schemas_tables_and_partitions(lake_settings: LakeSettings) -> None:
    con = open_lake(lake_settings)
    schemas = {
        r[0]
        for r in con.execute(
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = 'lake'"
        ).fetchall()
    }
    assert {"market", "desk", "reports", "ops"} <= schemas
    tables = {
        f"{s}.{t}"
        for s, t in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'lake'"
        ).fetchall()
    }
    assert set(PARTITIONED_TABLES) | {"ops.kafka_offsets", "ops.quarantine", "ops.ingest_runs"} <= tables
    con.close()
    open_lake(lake_settings).close()  # idempotent


def test_a_sqlite_catalog_is_in_wal_mode(tmp_path) -> None:
    lake = LakeSettings(home=tmp_path / "home")
    open_lake(lake).close()
    with sqlite3.connect(lake.sqlite_catalog_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rows_land_in_hive_date_partitions(lake_settings: LakeSettings) -> None:
    con = open_lake(lake_settings)
    con.execute(
        "INSERT INTO market.index_prices (index_name, timestamp, price, date) VALUES "
        "('btc_usd', '2024-01-02 07:59:59', 42000, '2024-01-02')"
    )
    files = [
        r[0]
        for r in con.execute(
            "SELECT data_file FROM ducklake_list_files('lake', 'index_prices', schema => 'market')"
        ).fetchall()
    ]
    assert len(files) == 1 and "date=2024-01-02" in files[0]
    ro = open_lake(lake_settings, read_only=True)
    assert ro.execute("SELECT price FROM market.index_prices").fetchall() == [(42000.0,)]
    with pytest.raises(Exception, match=r"read-only|read only"):
        ro.execute("DELETE FROM market.index_prices")


def test_read_only_open_of_a_missing_lake_names_the_path(tmp_path) -> None:
    with pytest.raises(LakeError, match="no lake at"):
        open_lake(LakeSettings(home=tmp_path / "nowhere"), read_only=True)


@pytest.mark.parametrize("variant", ["sqlite", "postgres"])
def test_writers_opening_a_fresh_lake_at_once_all_get_it(
    tmp_path, variant: str, request: pytest.FixtureRequest
) -> None:
    """The first DAG run's seven drains open a lake that does not exist yet, all at once: six of them
    failed their first try (DuckLake's initialisation and the table creation raced). A SQLite lake is
    created under a file lock; a Postgres catalog has none, and the retries must suffice."""
    import threading

    from derivlake.lake import catalog
    from tests.conftest import postgres_lake

    failures: list[str] = []
    for trial in range(3):
        lake = LakeSettings(home=tmp_path / f"lake{trial}")
        if variant == "postgres":
            lake = postgres_lake(request.getfixturevalue("postgres_server"), lake.home)
        start = threading.Barrier(7)

        def open_it(lake: LakeSettings = lake, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                catalog.open_lake(lake).close()
            except Exception as exc:  # every failure is reported below
                failures.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=open_it) for _ in range(7)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        con = open_lake(lake, read_only=True)
        assert set(PARTITIONED_TABLES) <= {
            f"{s}.{t}"
            for s, t in con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
        }
        con.close()
    assert failures == []


def test_a_reader_sees_its_snapshot_whole_when_a_merge_commits_meanwhile(
    lake_settings: LakeSettings,
) -> None:
    """A merge committing between a reader's first read (which fixes its snapshot) and its read of the
    merged table: the reader must still see every row of its snapshot. On a SQLite catalog DuckDB's
    multithreaded catalog scans made it see none of them (the CI failure of 2026-12-01)."""
    writer = open_lake(lake_settings)
    prices = "market.index_prices"
    for batch in range(5):  # five files in one partition
        writer.execute(
            f"INSERT INTO {prices} (index_name, timestamp, price, date) SELECT 'btc_usd', "
            f"TIMESTAMP '2024-01-02' + INTERVAL (range) SECOND, {batch}, DATE '2024-01-02' FROM range(100)"
        )
    # the newest file is another table's, so the merged file gets a rowid past every one the reader saw
    writer.execute("INSERT INTO ops.offset_row_claims VALUES (now()::TIMESTAMP, 'reader test')")
    reader = open_lake(lake_settings, read_only=True)
    reader.execute("BEGIN")
    claims = reader.execute("SELECT count(*) FROM ops.offset_row_claims").fetchone()[0]
    writer.execute("CALL ducklake_merge_adjacent_files('lake', 'index_prices', schema => 'market')")
    files = writer.execute(
        "SELECT count(*) FROM ducklake_list_files('lake', 'index_prices', schema => 'market')"
    ).fetchone()[0]
    assert files == 1, "the merge must have replaced the five files for this test to mean anything"
    writer.execute(
        f"INSERT INTO {prices} (index_name, timestamp, price, date) "
        "VALUES ('eth_usd', TIMESTAMP '2024-01-02', 1, DATE '2024-01-02')"
    )
    seen = reader.execute(f"SELECT count(*), count(DISTINCT price) FROM {prices}").fetchone()
    assert seen == (500, 5), f"the reader at its snapshot saw {seen}, not (500 rows, 5 batches)"
    assert reader.execute("SELECT count(*) FROM ops.offset_row_claims").fetchone()[0] == claims
    reader.execute("COMMIT")
    assert reader.execute(f"SELECT count(*) FROM {prices}").fetchone()[0] == 501
