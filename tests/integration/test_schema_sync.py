"""A lake made by an older derivlake gains the columns and tables this version declares when a writer
opens it, keeps its rows, and drains and reports on; a type it cannot widen stops the writer, naming it."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from duckdb import DuckDBPyConnection

from derivlake.config import DrainSettings, KafkaSettings, LakeSettings
from derivlake.ingest.drain import drain_topic
from derivlake.lake import catalog
from derivlake.lake.catalog import open_lake
from derivlake.lake.schema_sync import (
    ColumnChange,
    LakeSchemaError,
    column_changes,
    declared_columns,
    ensure_tables,
    table_columns,
)
from derivlake.reports.margin import SQL_DIR as REPORT_SQL
from derivlake.reports.margin import build_margin, compute_margin
from tests.integration.drain_support import produce_tickers
from tests.integration.test_chain_build import D
from tests.integration.test_margin_build import seed_margin_day

SCHEMA = catalog.SCHEMA_SQL.read_text()


def older(ddl: str, tmp_path: Path, *edits: tuple[str, str]) -> Path:
    """`ddl` as an older version had it: each (text, replacement) applied once."""
    for old, new in edits:
        assert ddl.count(old) == 1, old
        ddl = ddl.replace(old, new)
    path = tmp_path / "older.sql"
    path.write_text(ddl)
    return path


@contextlib.contextmanager
def made_by(path: Path, lake: LakeSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[DuckDBPyConnection]:
    """A writer of a version whose schema.sql was `path` (bootstrap included), that made the lake."""
    with monkeypatch.context() as m:
        m.setattr(catalog, "SCHEMA_SQL", path)
        con = open_lake(lake)
        try:
            yield con
        finally:
            con.close()


def as_sets(columns: dict[str, list[tuple[str, str]]], tables) -> dict[str, set[tuple[str, str]]]:
    return {t: set(columns[t]) for t in tables}


# a column dropped from a partitioned data table and from a run record, a type narrower than today's,
# and a table that did not exist yet
OLD_SCHEMA_EDITS = (
    ("mark_price DOUBLE, mark_iv DOUBLE, underlying_index", "mark_price DOUBLE, underlying_index"),
    ("quarantined BIGINT, duplicates BIGINT, late BIGINT,", "quarantined BIGINT, duplicates BIGINT,"),
    ("rows BIGINT, files BIGINT, bytes BIGINT\n);", "rows INTEGER, files BIGINT, bytes BIGINT\n);"),
    (SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS ops.offset_resets") :].split(";")[0] + ";", ""),
)


def test_an_older_lake_gains_the_new_columns_and_drains_into_them(
    kafka: KafkaSettings,
    lake_settings: LakeSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with made_by(older(SCHEMA, tmp_path, *OLD_SCHEMA_EDITS), lake_settings, monkeypatch) as old:
        assert "mark_iv" not in dict(table_columns(old)["market.options_ticker"])
        old.execute(
            "INSERT INTO market.options_ticker (symbol, timestamp, date) "
            "VALUES ('BTC-27DEC24-100000-C', '2024-12-23 00:00:00', '2024-12-23')"
        )
    produce_tickers(kafka, 0, 100)

    caplog.set_level(logging.WARNING, logger="derivlake.lake.schema_sync")
    con = open_lake(lake_settings)  # this version
    declared = declared_columns(SCHEMA)
    assert as_sets(table_columns(con), declared) == as_sets(declared, declared)
    added = {r.getMessage().split(": ", 1)[1] for r in caplog.records}
    assert added == {
        "added column market.options_ticker.mark_iv DOUBLE",
        "added column ops.ingest_runs.late BIGINT",
        "widened ops.table_stats.rows from INTEGER to BIGINT",
    }
    con.close()

    result = drain_topic(kafka, lake_settings, "deribit.ticker", DrainSettings(idle_timeout_s=5))
    assert result.messages == 100 and result.rows["market.options_ticker"] == 100
    ro = open_lake(lake_settings, read_only=True)
    assert ro.execute(
        "SELECT count(*) FILTER (mark_iv = 52.5), count(*) FILTER (mark_iv IS NULL) FROM market.options_ticker"
    ).fetchone() == (100, 1)
    # the run record's new column is filled: the tickers are of 2024-12-24, received today, so all late
    assert ro.execute("SELECT sum(messages), sum(late) FROM ops.ingest_runs").fetchone() == (100, 100)
    caplog.clear()
    open_lake(lake_settings).close()  # up to date: nothing more to do
    assert not caplog.records


def test_a_type_that_cannot_be_widened_stops_the_writer_and_changes_nothing(
    lake_settings: LakeSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edits = (
        ("side VARCHAR, price DOUBLE, amount DOUBLE,\n    trade_seq", "side VARCHAR, price VARCHAR, amount DOUBLE,\n    trade_seq"),
        OLD_SCHEMA_EDITS[0],
    )  # fmt: skip
    with made_by(older(SCHEMA, tmp_path, *edits), lake_settings, monkeypatch):
        pass
    with pytest.raises(LakeSchemaError) as err:
        open_lake(lake_settings)
    assert "market.trades.price is VARCHAR in the lake, but this version of derivlake declares DOUBLE" in str(
        err.value
    )
    assert "Nothing was changed" in str(err.value)
    ro = open_lake(lake_settings, read_only=True)
    columns = table_columns(ro)
    assert dict(columns["market.trades"])["price"] == "VARCHAR"
    assert "mark_iv" not in dict(columns["market.options_ticker"])  # planned in the same transaction


def test_a_margin_table_of_an_older_version_gets_the_span_columns_filled(
    lake_settings: LakeSettings, tmp_path: Path
) -> None:
    """The case that was seen: margin tables made before SPAN's columns existed (CREATE TABLE IF NOT
    EXISTS kept them, and the report cut its frames to them, dropping the SPAN figures)."""
    span = "spread_charge DOUBLE, short_option_minimum DOUBLE, net_option_value DOUBLE,\n    "
    ddl = older((REPORT_SQL / "margin_tables.sql").read_text(), tmp_path, (span, ""))
    con = open_lake(lake_settings)
    con.execute(ddl.read_text())
    seed_margin_day(con)
    build_margin(con, D, reports_dir=tmp_path / "reports", html=False)
    span_columns = ["spread_charge", "short_option_minimum", "net_option_value"]
    keys = ["account_id", "currency", "model"]
    stored = con.execute(
        f"SELECT {', '.join(keys + span_columns)} FROM reports.margin_accounts ORDER BY ALL"
    ).df()
    computed, _ = compute_margin(con, D)
    computed = computed[keys + span_columns].sort_values(keys, ignore_index=True)
    assert stored[span_columns].notna().to_numpy().sum() > 0
    pd.testing.assert_frame_equal(stored, computed, check_dtype=False)


def test_two_writers_bringing_a_table_up_to_date_at_once_add_each_column_once(
    lake_settings: LakeSettings, tmp_path: Path
) -> None:
    span = "spread_charge DOUBLE, short_option_minimum DOUBLE, net_option_value DOUBLE,\n    "
    old = older((REPORT_SQL / "margin_tables.sql").read_text(), tmp_path, (span, ""))
    cons = [open_lake(lake_settings) for _ in range(2)]
    cons[0].execute(old.read_text())
    start = threading.Barrier(2)
    applied: list[list[ColumnChange]] = []
    errors: list[BaseException] = []

    def writer(con) -> None:
        start.wait()
        try:
            applied.append(ensure_tables(con, REPORT_SQL / "margin_tables.sql"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(c,)) for c in cons]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(c.column for changes in applied for c in changes) == sorted(
        ["net_option_value", "short_option_minimum", "spread_charge"]
    )
    names = [n for n, _ in table_columns(cons[0])["reports.margin_accounts"]]
    assert len(names) == len(set(names)) and {"spread_charge", "net_option_value"} <= set(names)


def test_column_changes_adds_widens_and_leaves_other_tables_alone() -> None:
    declared = {
        "s.t": [("a", "BIGINT"), ("B", "VARCHAR"), ("c", "DOUBLE")],
        "s.new": [("x", "INTEGER")],
    }
    existing = {"s.t": [("b", "VARCHAR"), ("a", "INTEGER"), ("gone", "DOUBLE")], "s.other": [("y", "DATE")]}
    assert column_changes(declared, existing) == [
        ColumnChange("s.t", "a", "BIGINT", "INTEGER"),
        ColumnChange("s.t", "c", "DOUBLE"),
    ]
    assert ColumnChange("s.t", "c", "DOUBLE").statement() == 'ALTER TABLE s.t ADD COLUMN "c" DOUBLE'
    assert column_changes(declared, {"s.t": declared["s.t"]}) == []
