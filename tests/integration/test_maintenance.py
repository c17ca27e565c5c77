"""Maintenance on a real lake: it compacts, records stats, and never disturbs writers or readers."""

from __future__ import annotations

import itertools
import math
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from derivlake.config import DrainSettings, LakeSettings
from derivlake.lake.catalog import CatalogBusy, locked_commit, open_lake
from derivlake.lake.maintenance import MaintenanceConfig, MergeOutOfMemory, maintain
from tests.conftest import catalog_write_lock, lake_env, unreferenced_files

ROWS_PER_BATCH = 400
INSERT_BATCH = """
INSERT INTO market.options_ticker (exchange, symbol, timestamp, mark_price, date, kafka_topic, kafka_partition, kafka_offset)
SELECT 'deribit', 'BTC-27DEC25-' || (60000 + 1000 * (i % 20)) || '-C',
       TIMESTAMP '2025-03-06 00:00:00' + to_microseconds(CAST($batch AS BIGINT) * 1000000 + i),
       0.05 + i / 1e6, DATE '2025-03-06', 'deribit.ticker', 0, $batch
FROM range($rows) t(i)
"""


def _commit_batch(con, batch: int, lake: LakeSettings | None = None) -> None:
    """One drain-like commit; given the lake, under its commit lock as a drain's (`locked_commit`)."""

    def commit() -> None:
        con.execute("BEGIN")
        con.execute(INSERT_BATCH, {"batch": batch, "rows": ROWS_PER_BATCH})
        con.execute("COMMIT")

    locked_commit(con, lake, f"batch {batch}", commit, attempts=30)  # no lake: no lock


def _rows_and_batches(lake: LakeSettings) -> tuple[int, int]:
    con = open_lake(lake, read_only=True)
    try:
        return con.execute(
            "SELECT count(*), count(DISTINCT kafka_offset) FROM market.options_ticker"
        ).fetchone()
    finally:
        con.close()


def _files_of_every_table(con) -> int:
    """Live data files of every lake table (ops and reports too), one ducklake_list_files per table."""
    tables = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'lake'"
    ).fetchall()
    return sum(
        con.execute(f"SELECT count(*) FROM ducklake_list_files('lake', '{t}', schema => '{s}')").fetchone()[0]
        for s, t in tables
    )


def test_merge_compacts_partitions_and_records_table_stats(lake_settings: LakeSettings) -> None:
    con = open_lake(lake_settings)
    for batch in range(40):
        _commit_batch(con, batch)
    for run in range(6):  # an ops table's one small file per drain commit: merged too, counted too
        con.execute("INSERT INTO ops.ingest_runs (run_id, topic) VALUES (?, 'deribit.ticker')", [f"r{run}"])
    before = con.execute(
        "SELECT count(*) FROM ducklake_list_files('lake', 'options_ticker', schema => 'market')"
    ).fetchone()[0]
    files_before = _files_of_every_table(con)
    con.close()
    target = 256 * 1024
    result = maintain(
        lake_settings, MaintenanceConfig(target_file_size_bytes=target, file_grace=timedelta(0))
    )
    part = next(p for p in result.partitions if p["table"] == "market.options_ticker")
    assert before == 40 and result.files_before == files_before >= 46
    # the 40 drain files, and the ops tables' one file per commit, merged into fewer
    assert result.files_merged >= 46 and result.files_written < result.files_merged
    assert result.files_after == result.files_before - result.files_merged + result.files_written
    assert part["rows"] == 40 * ROWS_PER_BATCH
    assert part["files"] <= 2 * math.ceil(part["bytes"] / target), part
    assert result.as_metadata()["tables"]["market.options_ticker"]["rows"] == 40 * ROWS_PER_BATCH
    assert _rows_and_batches(lake_settings) == (40 * ROWS_PER_BATCH, 40)
    con = open_lake(lake_settings, read_only=True)
    stats = con.execute(
        "SELECT rows, files FROM ops.table_stats WHERE table_name = 'options_ticker' AND partition_date = '2025-03-06'"
    ).fetchall()
    assert stats == [(40 * ROWS_PER_BATCH, part["files"])]


def test_merged_files_are_sorted_by_symbol_then_time_with_narrow_row_groups(
    lake_settings: LakeSettings,
) -> None:
    """DuckLake's merge sorts by the table's SET SORTED BY keys: checked in the merged Parquet itself.

    Drain batches interleave 20 symbols in time order, so a drain file's row group spans all of them. A
    merged file must hold rows in (symbol, timestamp) order, in row groups whose symbol ranges follow
    each other and are a few symbols wide: that is what lets a one-underlying query skip row groups.
    """
    import pyarrow.parquet as pq

    con = open_lake(lake_settings)
    con.execute("CALL lake.set_option('parquet_row_group_size', 2048)")  # DuckDB's minimum: several per file
    config = MaintenanceConfig(target_file_size_bytes=256 * 1024, file_grace=timedelta(0))
    for first, end in ((0, 30), (30, 40)):  # the second run merges a sorted file with new drain files
        for batch in range(first, end):
            _commit_batch(con, batch)
        before_run = con.execute("SELECT id FROM lake.current_snapshot()").fetchone()[0]
        con.close()
        maintain(lake_settings, config)
        con = open_lake(lake_settings)
    files = con.execute(
        "SELECT data_file FROM ducklake_list_files('lake', 'options_ticker', schema => 'market')"
    ).fetchall()
    altered = con.execute(
        "SELECT count(*) FROM ducklake_snapshots('lake') WHERE snapshot_id > ? AND changes['tables_altered'] IS NOT NULL",
        [before_run],
    ).fetchone()[0]
    con.close()
    assert altered == 0, "a run on a lake already laid out must not alter tables (each ALTER races drains)"
    assert 0 < len(files) < 40
    for (path,) in files:
        table = pq.read_table(path, columns=["symbol", "timestamp"])
        keys = list(zip(table["symbol"].to_pylist(), table["timestamp"].to_pylist(), strict=True))
        assert keys == sorted(keys), f"{path} is not sorted by (symbol, timestamp)"
        meta = pq.ParquetFile(path).metadata
        schema = meta.schema.to_arrow_schema()
        stats = [
            meta.row_group(i).column(schema.get_field_index("symbol")).statistics
            for i in range(meta.num_row_groups)
        ]
        ranges = [(s.min, s.max) for s in stats]
        symbols = sorted({symbol for symbol, _ in keys})
        assert len(ranges) > 1 and len(symbols) == 20
        assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(ranges)), ranges
        widest = max(sum(lo <= s <= hi for s in symbols) for lo, hi in ranges)
        assert widest <= math.ceil(2048 * len(symbols) / meta.num_rows) + 1, ranges
        # Parquet V2 pages (WRITE_OPTIONS): sorted timestamps are delta-encoded
        assert (
            "DELTA_BINARY_PACKED" in meta.row_group(0).column(schema.get_field_index("timestamp")).encodings
        )


def _writer(lake: LakeSettings, stop, done) -> None:
    # commits as a drain does: on a SQLite catalog under the lake's shared commit lock, which a merge
    # holds exclusively (unlocked, a commit every half second made merges start over until they gave up)
    con = open_lake(lake)
    batch = 0
    while not stop.is_set():
        _commit_batch(con, batch, lake)
        done.put(batch)
        batch += 1
        time.sleep(0.5)  # a drain commit every half second: ~600x the production rate


def _maintainer(lake: LakeSettings, stop, done) -> None:
    while not stop.is_set():
        # replaced files are deleted 20 s after the merge: longer than any reader's query here, as the
        # grace must be (a zero grace deletes files that a reader that just opened its snapshot needs)
        maintain(lake, MaintenanceConfig(target_file_size_bytes=64 * 1024, file_grace=timedelta(seconds=20)))
        time.sleep(1.0)
    done.put("maintainer ok")


def _reader(lake: LakeSettings, stop, done) -> None:
    seen: set[int] = set()
    reads = 0
    while not stop.is_set():
        con = open_lake(lake, read_only=True)
        counts = dict(
            con.execute("SELECT kafka_offset, count(*) FROM market.options_ticker GROUP BY 1").fetchall()
        )
        con.close()
        if any(n != ROWS_PER_BATCH for n in counts.values()):
            raise AssertionError(f"a reader saw part of a batch or a duplicate: {counts}")
        if not seen <= counts.keys():
            raise AssertionError("a committed batch disappeared for a reader")
        seen = set(counts)
        reads += 1
        time.sleep(0.05)
    done.put(reads)


def test_drains_maintenance_and_readers_at_once_readers_see_whole_batches(
    lake_settings: LakeSettings,
) -> None:
    """Separate processes, as in production (drain tasks, the maintenance task, analysts)."""
    import multiprocessing as mp

    seconds = float(os.environ.get("DERIVLAKE_CONCURRENCY_SECONDS", "60"))
    open_lake(lake_settings).close()
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    queues = {name: ctx.Queue() for name in ("writer", "maintainer", "reader")}
    targets = {"writer": _writer, "maintainer": _maintainer, "reader": _reader}
    procs = {n: ctx.Process(target=targets[n], args=(lake_settings, stop, queues[n])) for n in targets}
    for p in procs.values():
        p.start()
    time.sleep(seconds)
    stop.set()
    committed: list[int] = []
    deadline = time.monotonic() + 180
    while procs["writer"].is_alive() and time.monotonic() < deadline:
        while not queues["writer"].empty():
            committed.append(queues["writer"].get())
        time.sleep(0.1)
    for p in procs.values():
        p.join(timeout=180)
    while not queues["writer"].empty():
        committed.append(queues["writer"].get())
    assert {n: p.exitcode for n, p in procs.items()} == {"writer": 0, "maintainer": 0, "reader": 0}
    assert queues["maintainer"].get(timeout=5) == "maintainer ok"
    assert queues["reader"].get(timeout=5) > 10 and len(committed) > 10
    con = open_lake(lake_settings, read_only=True)
    final = dict(
        con.execute("SELECT kafka_offset, count(*) FROM market.options_ticker GROUP BY 1").fetchall()
    )
    assert final == {b: ROWS_PER_BATCH for b in committed}


def test_maintenance_of_an_empty_lake_is_a_no_op(lake_settings: LakeSettings) -> None:
    result = maintain(lake_settings)
    assert (result.files_merged, result.files_written, result.partitions) == (0, 0, [])
    con = open_lake(lake_settings, read_only=True)
    try:  # the bootstrap's row of ops.offset_row_claims: counted like every table maintenance merges
        assert result.files_before == result.files_after == _files_of_every_table(con)
    finally:
        con.close()


def test_a_catalog_locked_throughout_fails_the_run_naming_it_and_changes_nothing(
    lake_settings: LakeSettings,
) -> None:
    config = MaintenanceConfig(target_file_size_bytes=256 * 1024, file_grace=timedelta(0), conflict_retries=3)
    maintain(lake_settings, config)  # options and sort keys set: the next run goes straight to the merge
    con = open_lake(lake_settings)
    for batch in range(5):
        _commit_batch(con, batch)
    con.close()
    with (
        catalog_write_lock(lake_settings),
        pytest.raises(
            CatalogBusy,
            match=r"^merge market\.options_ticker: the lake catalog (sqlite|postgres):.* stayed locked or in conflict .*\(3 attempts\)",
        ),
    ):
        maintain(lake_settings, config)
    con = open_lake(lake_settings, read_only=True)
    files = "SELECT count(*) FROM ducklake_list_files('lake', 'options_ticker', schema => 'market')"
    assert con.execute(files).fetchone()[0] == 5
    con.close()
    result = maintain(lake_settings, config)  # the lock is gone: the next run does the work
    assert result.files_after < 5
    con = open_lake(lake_settings, read_only=True)
    assert con.execute("SELECT count(*) FROM market.options_ticker").fetchone()[0] == 5 * ROWS_PER_BATCH


# A day of ~600 options in ~4 MB drain files: merged into 32 MB files, the sort needs more than
# 160 MB of DuckDB memory on two threads and less on one (measured: one thread fits in 128 MB, two
# did not fit in 240 MB; nothing fits in 96 MB).
DAY_BATCH = """
INSERT INTO market.options_ticker (exchange, symbol, timestamp, mark_price, mark_iv, underlying_price,
                                   delta, date, kafka_topic, kafka_partition, kafka_offset)
SELECT 'deribit', ['BTC', 'ETH', 'SOL_USDC'][s % 3 + 1] || '-27JUN25-' || (1000 + s) || '-C',
       TIMESTAMP '2025-03-06 00:00:00' + to_seconds($batch * 2400 + t * 10) + to_microseconds(s),
       0.01 + random() / 10, 40 + random() * 40, 90000 + random() * 100, random(),
       DATE '2025-03-06', 'deribit.ticker', 0, $batch * 1000000 + t * 1000 + s
FROM range(240) a(t), range(600) b(s)
"""
DAY_ROWS = 12 * 240 * 600


def _day_of_600_options(lake: LakeSettings) -> int:
    con = open_lake(lake)
    for batch in range(12):
        con.execute(DAY_BATCH, {"batch": batch})
    files = con.execute(
        "SELECT count(*) FROM ducklake_list_files('lake', 'options_ticker', schema => 'market')"
    ).fetchone()[0]
    con.close()
    return files


def test_a_merge_that_runs_out_of_memory_is_retried_on_one_thread(
    lake_settings: LakeSettings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    files = _day_of_600_options(lake_settings)
    monkeypatch.setenv("DERIVLAKE_DUCKDB_MEMORY_LIMIT", "160MB")
    config = MaintenanceConfig(target_file_size_bytes=32 * 2**20, file_grace=timedelta(0), threads=2)
    with caplog.at_level("INFO", logger="derivlake.lake.maintenance"):
        result = maintain(lake_settings, config)
    assert "merge market.options_ticker: out of memory with threads=2" in caplog.text
    assert re.search(r"merge market\.options_ticker: \d+ files -> \d+ in .* with threads=1", caplog.text)
    part = next(p for p in result.partitions if p["table"] == "market.options_ticker")
    assert part["rows"] == DAY_ROWS and part["files"] < files
    con = open_lake(lake_settings, read_only=True)
    assert con.execute(
        "SELECT count(*), count(DISTINCT kafka_offset) FROM market.options_ticker"
    ).fetchone() == (DAY_ROWS, DAY_ROWS)


def test_a_merge_that_does_not_fit_on_one_thread_fails_naming_the_limit_and_keeps_the_files(
    lake_settings: LakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _day_of_600_options(lake_settings)
    monkeypatch.setenv("DERIVLAKE_DUCKDB_MEMORY_LIMIT", "64MB")
    config = MaintenanceConfig(target_file_size_bytes=32 * 2**20, file_grace=timedelta(0), threads=2)
    with pytest.raises(
        MergeOutOfMemory,
        match=r"^merge market\.options_ticker: sorting files of up to 32 MB does not fit DuckDB's memory "
        r"limit of 61\.0 MiB even on one thread .*Raise DERIVLAKE_DUCKDB_MEMORY_LIMIT or lower",
    ):
        maintain(lake_settings, config)
    monkeypatch.delenv("DERIVLAKE_DUCKDB_MEMORY_LIMIT")
    con = open_lake(lake_settings, read_only=True)
    assert (
        con.execute(
            "SELECT count(*) FROM ducklake_list_files('lake', 'options_ticker', schema => 'market')"
        ).fetchone()[0]
        == files
    )
    assert con.execute("SELECT count(*) FROM market.options_ticker").fetchone()[0] == DAY_ROWS


def test_a_reader_of_a_snapshot_from_before_the_merge_keeps_its_files_through_the_grace(
    lake_settings: LakeSettings,
) -> None:
    """Files a merge replaces stay on disk for the grace period: a query that listed them before the
    merge may still be reading them.

    DuckLake 1.5.5 on SQLite compared their deletion time by date: with a one-minute grace they were
    deleted at once (except in the first minute after midnight UTC).
    """
    con = open_lake(lake_settings)
    for batch in range(6):
        _commit_batch(con, batch)
    con.close()
    reader = open_lake(lake_settings, read_only=True)
    reader.execute("BEGIN")
    query = "SELECT count(*), sum(kafka_offset) FROM market.options_ticker"
    before = reader.execute(query).fetchone()
    files = reader.execute(
        "SELECT data_file FROM ducklake_list_files('lake', 'options_ticker', schema => 'market')"
    ).fetchall()
    config = MaintenanceConfig(target_file_size_bytes=256 * 1024, file_grace=timedelta(minutes=1))
    result = maintain(lake_settings, config)
    assert result.files_after < len(files) == 6 and result.deleted_files == 0
    assert all(os.path.exists(f) for (f,) in files)
    assert reader.execute(query).fetchone() == before == (6 * ROWS_PER_BATCH, sum(range(6)) * ROWS_PER_BATCH)
    reader.execute("COMMIT")


KILLED_WRITER = """
import sys, time
from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
con = open_lake(LakeSettings.from_env())
con.execute("BEGIN")
con.execute(sys.argv[1], {"batch": 99, "rows": 50_000})
print("written", flush=True)
time.sleep(600)
"""


def test_files_of_a_writer_killed_before_its_commit_go_after_the_orphan_grace_and_nothing_else(
    lake_settings: LakeSettings,
) -> None:
    """A writer killed between its Parquet write and its commit (kill -9, OOM, a lost worker) leaves
    files no snapshot ever referenced. Maintenance keeps them while they are younger than the orphan
    grace (they might be a running writer's) and deletes them after it, and no other file: not the
    committed ones, not the ones a merge replaced that time travel still reads."""
    con = open_lake(lake_settings)
    for batch in range(4):
        _commit_batch(con, batch)
    first = con.execute("SELECT id FROM lake.current_snapshot()").fetchone()[0]
    con.close()
    merged = maintain(lake_settings, MaintenanceConfig(target_file_size_bytes=256 * 1024))
    assert merged.files_after < 4  # the 4 replaced files stay for the file grace
    env = {**os.environ, **lake_env(lake_settings)}
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, INSERT_BATCH], env=env, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "written"
    writer.kill()
    writer.wait()
    orphans = unreferenced_files(lake_settings)
    assert len(orphans) == 1, orphans
    on_disk = set(map(str, Path(lake_settings.data_dir).rglob("*.parquet")))

    kept = maintain(lake_settings)  # the orphan is seconds old: it could be a running writer's
    assert kept.orphaned_files == 0 and unreferenced_files(lake_settings) == orphans
    for path in on_disk:  # a day later by their clocks: age alone deletes nothing referenced
        os.utime(path, (time.time() - 25 * 3600,) * 2)
    gone = maintain(lake_settings)
    assert gone.orphaned_files == 1 and gone.as_metadata()["orphaned_files_deleted"] == 1
    assert unreferenced_files(lake_settings) == set()
    assert set(map(str, Path(lake_settings.data_dir).rglob("*.parquet"))) >= on_disk - orphans
    con = open_lake(lake_settings, read_only=True)
    assert con.execute("SELECT count(*), max(kafka_offset) FROM market.options_ticker").fetchone() == (
        4 * ROWS_PER_BATCH,
        3,
    )
    at_first = f"SELECT count(*) FROM market.options_ticker AT (VERSION => {first})"
    assert con.execute(at_first).fetchone()[0] == 4 * ROWS_PER_BATCH  # read from the replaced files


def test_snapshots_younger_than_the_retention_stay_for_time_travel(lake_settings: LakeSettings) -> None:
    """DuckLake 1.5.5 on SQLite compared snapshot times by date: a one-minute retention expired every
    snapshot of the day but the last, and time travel to the first batch failed."""
    con = open_lake(lake_settings)
    after_batch = []
    for batch in range(3):
        _commit_batch(con, batch)
        after_batch.append(con.execute("SELECT id FROM lake.current_snapshot()").fetchone()[0])
    snapshots = con.execute("SELECT snapshot_id FROM lake.snapshots() ORDER BY 1").fetchall()
    con.close()
    maintain(lake_settings, MaintenanceConfig(snapshot_retention=timedelta(minutes=1)))
    con = open_lake(lake_settings, read_only=True)
    kept = con.execute("SELECT snapshot_id FROM lake.snapshots() ORDER BY 1").fetchall()
    assert kept[: len(snapshots)] == snapshots  # maintenance only added its own
    for n, snapshot in enumerate(after_batch, start=1):
        at = f"SELECT count(*) FROM market.options_ticker AT (VERSION => {snapshot})"
        assert con.execute(at).fetchone()[0] == n * ROWS_PER_BATCH


def test_a_drain_during_a_merge_waits_for_it_and_the_merge_does_not_start_over(
    lake_settings: LakeSettings, kafka, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite, a commit landing while a merge ran, to any table, failed the merge's own commit and
    made it start over (measured: one insert 15 s into a 45 s merge cost the whole merge; a drain
    every few seconds would keep a big table from ever merging). The drain waits for the merge now.
    A Postgres catalog has no such lock: there the drain commits beside the merge, and neither redoes."""
    import fcntl
    import json
    import threading

    from derivlake.ingest.drain import drain_topic
    from derivlake.lake import maintenance
    from tests.integration.drain_support import produce

    con = open_lake(lake_settings)
    for batch in range(24):
        con.execute(DAY_BATCH, {"batch": batch})
    con.close()
    trades = [
        {"trade_id": f"T{i}", "instrument_name": "BTC-PERPETUAL", "timestamp": 1766736000000 + i,
         "price": 60000.0, "amount": 1.0, "direction": "buy", "trade_seq": i, "tick_direction": 0,
         "index_price": 60000.0, "mark_price": 60000.0}
        for i in range(200)
    ]  # fmt: skip
    produce(kafka, "deribit.trades", [json.dumps(t).encode() for t in trades])
    merging = threading.Event()
    real_merge = maintenance._merge

    def merge_and_tell(con, table: str, config: MaintenanceConfig) -> tuple[int, int]:
        if table == "market.options_ticker":
            merging.set()
        return real_merge(con, table, config)

    monkeypatch.setattr(maintenance, "_merge", merge_and_tell)
    config = MaintenanceConfig(target_file_size_bytes=64 * 2**20, file_grace=timedelta(0), threads=1)
    with caplog.at_level("INFO"):
        maintainer = threading.Thread(target=maintain, args=(lake_settings, config))
        maintainer.start()
        assert merging.wait(60), "the merge of the big table never started"
        time.sleep(1.0)  # into its sort, which takes seconds
        if lake_settings.is_sqlite:
            with open(lake_settings.lake_dir / ".commit.lock", "a") as lock, pytest.raises(BlockingIOError):
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)  # the merge holds the commit lock
        result = drain_topic(kafka, lake_settings, "deribit.trades", DrainSettings(idle_timeout_s=5))
        drained_during_merge = maintainer.is_alive()
        maintainer.join()
    assert result.rows["market.trades"] == 200
    if not lake_settings.is_sqlite:
        assert drained_during_merge, "the drain waited for the merge on a Postgres catalog"
    else:
        assert re.search(
            r"deribit\.trades (offset rows|commit): waiting for a maintenance merge", caplog.text
        )
    assert not re.search(r"merge market\.\w+: conflict", caplog.text), caplog.text
    assert re.search(r"merge market\.options_ticker: \d+ files -> \d+", caplog.text)


def test_maintenance_commits_nothing_beside_another_runs_merge_on_sqlite(lake_settings: LakeSettings) -> None:
    """Its options, expiry, cleanup and stats commit under the shared commit lock, as a drain's do: on a
    SQLite catalog a commit landing during another run's merge makes that merge start over."""
    import threading

    from derivlake.lake.catalog import commit_lock

    if not lake_settings.is_sqlite:
        pytest.skip("the commit lock is a SQLite catalog's")
    con = open_lake(lake_settings)
    _commit_batch(con, 0)
    snapshot = "SELECT max(snapshot_id) FROM ducklake_snapshots('lake')"
    before = con.execute(snapshot).fetchone()[0]
    con.close()
    results: list[object] = []
    run = threading.Thread(target=lambda: results.append(maintain(lake_settings)))
    with commit_lock(lake_settings, "another run's merge", exclusive=True):
        run.start()
        time.sleep(2.0)  # a fresh lake's options: its first commit, held back by the merge
        con = open_lake(lake_settings, read_only=True)
        during = con.execute(snapshot).fetchone()[0]
        con.close()
        assert run.is_alive() and during == before
    run.join(60)
    con = open_lake(lake_settings, read_only=True)
    assert results and con.execute(snapshot).fetchone()[0] > before
    con.close()


def test_on_a_postgres_catalog_files_and_snapshots_go_when_their_time_is_up(
    postgres_server, tmp_path
) -> None:
    """Postgres compares the times themselves: the SQLite workaround (a day more) would keep a day of
    replaced files on disk there. A 2-second grace and retention: kept by the run that replaces them,
    deleted and expired by a run 3 seconds later."""
    from tests.conftest import postgres_lake

    lake = postgres_lake(postgres_server, tmp_path / "home")
    con = open_lake(lake)
    for batch in range(6):
        _commit_batch(con, batch)
    files = con.execute(
        "SELECT data_file FROM ducklake_list_files('lake', 'options_ticker', schema => 'market')"
    ).fetchall()
    first_snapshot = con.execute("SELECT min(snapshot_id) FROM lake.snapshots()").fetchone()[0]
    con.close()
    config = MaintenanceConfig(
        target_file_size_bytes=256 * 1024,
        file_grace=timedelta(seconds=2),
        snapshot_retention=timedelta(seconds=2),
    )
    first = maintain(lake, config)
    assert first.files_after < len(files) == 6 and first.deleted_files == 0
    assert all(os.path.exists(f) for (f,) in files)
    time.sleep(3)
    second = maintain(lake, config)
    assert second.deleted_files >= 6 and not any(os.path.exists(f) for (f,) in files)
    con = open_lake(lake, read_only=True)
    assert con.execute("SELECT min(snapshot_id) FROM lake.snapshots()").fetchone()[0] > first_snapshot
    assert con.execute("SELECT count(*) FROM market.options_ticker").fetchone()[0] == 6 * ROWS_PER_BATCH


def test_a_merge_whose_commit_reply_is_lost_keeps_its_merged_files(postgres_server, tmp_path) -> None:
    """The Postgres catalog applies a merge, then the connection drops before the reply (a failover at
    that moment): the merged file stays and the retried merge finds nothing left to merge. DuckLake
    1.5.5 keeps a merge's files when its COMMIT raises (this passes without the commit guard, which
    merges do not use); it deletes an insert's (test_drain). This test tells if an upgrade changes it."""
    from tests.postgres_support import CommitReplyCutter

    dbname = postgres_server.new_database()
    direct = LakeSettings(home=tmp_path / "home", catalog=postgres_server.catalog_spec(dbname))
    con = open_lake(direct)
    for batch in range(20):
        _commit_batch(con, batch)
    con.close()
    # a merge's commit schedules the merged-away files for deletion; no other commit here does
    cutter = CommitReplyCutter(postgres_server.port, marker=b"ducklake_files_scheduled_for_deletion")
    cutter.armed.set()
    try:
        result = maintain(cutter.route(direct), MaintenanceConfig(target_file_size_bytes=64 * 2**20))
    finally:
        cutter.close()
    assert cutter.cut.is_set()
    part = next(p for p in result.partitions if p["table"] == "market.options_ticker")
    assert part["files"] == 1 and part["rows"] == 20 * ROWS_PER_BATCH
    assert _rows_and_batches(direct) == (20 * ROWS_PER_BATCH, 20)
    assert unreferenced_files(direct) == set()


def test_the_orphan_sweep_rides_out_files_that_vanish_while_it_lists(lake_settings: LakeSettings) -> None:
    """DuckLake's orphan sweep fails when a file it listed is gone before it reads its age; drains
    losing a commit race delete their files, the commit guard drops its links. Measured: 4 of 30
    sweeps failed beside this churn, and a maintenance run failed in the concurrency test above."""
    import threading
    import uuid

    from derivlake.lake.maintenance import delete_orphans

    con = open_lake(lake_settings)
    churn_dir = Path(lake_settings.data_dir, "market", "options_ticker", "date=2025-03-06")
    churn_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            names = [churn_dir / f"ducklake-{uuid.uuid4()}.parquet" for _ in range(200)]
            for name in names:
                name.write_bytes(b"PAR1")
            for name in names:
                name.unlink()

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        swept = [delete_orphans(con, timedelta(hours=1)) for _ in range(30)]
    finally:
        stop.set()
        thread.join()
        con.close()
    assert swept == [0] * 30  # nothing was an hour old


def test_table_stats_whose_commit_reply_is_lost_are_recorded_once(postgres_server, tmp_path, caplog) -> None:
    """The catalog applies the table stats, then the connection drops before the reply: the retry finds
    the run's record and does not write it again (it did, a second later, before 2026-11-30)."""
    from tests.postgres_support import CommitReplyCutter

    dbname = postgres_server.new_database()
    direct = LakeSettings(home=tmp_path / "home", catalog=postgres_server.catalog_spec(dbname))
    con = open_lake(direct)
    _commit_batch(con, 0)  # one file: nothing to merge
    con.close()
    maintain(direct)  # sets the sort keys: the run below commits nothing but its stats
    cutter = CommitReplyCutter(postgres_server.port)
    cutter.armed.set()
    try:
        result = maintain(cutter.route(direct))
    finally:
        cutter.close()
    assert cutter.cut.is_set()
    assert "table stats were committed before the catalog connection dropped" in caplog.text
    con = open_lake(direct, read_only=True)
    recorded = con.execute("SELECT count(DISTINCT measured_at), count(*) FROM ops.table_stats").fetchall()
    con.close()
    assert recorded == [(2, 2 * len(result.partitions))]


def test_maintenance_removes_what_killed_processes_left_and_nothing_in_use(postgres_server, tmp_path) -> None:
    """Empty commit-guard directories (a process killed between linking and COMMIT; the orphan sweep
    took its links) and spill directories of hosts that are gone: removed once idle long enough.
    A guard directory still holding a link, a fresh one, this host's spill directories and another
    host's with a file still being written stay."""
    import socket

    from tests.conftest import postgres_lake

    lake = postgres_lake(postgres_server, tmp_path / "home")
    con = open_lake(lake)
    _commit_batch(con, 0)
    con.close()
    two_days_ago = time.time() - 2 * 86400

    def made(path: Path, *, old: bool, file: str | None = None) -> Path:
        path.mkdir(parents=True)
        if file:
            (path / file).write_bytes(b"x")
            if old:
                os.utime(path / file, (two_days_ago, two_days_ago))
        if old:
            os.utime(path, (two_days_ago, two_days_ago))
        return path

    guards = Path(lake.data_dir, ".commit-guard")
    spills = lake.spill_root
    gone = [
        made(guards / ("a" * 32), old=True),
        made(spills / "duckdb-gone-pod-7-abc", old=True, file="duckdb_temp_storage_DEFAULT-0.tmp"),
        made(spills / "duckdb-gone-pod-8-def", old=True),
    ]
    kept = [
        made(guards / ("b" * 32), old=True, file="0-ducklake-x.parquet"),  # a link: the orphan sweep's
        made(guards / ("c" * 32), old=False),
        made(spills / f"duckdb-{socket.gethostname()}-1-aaa", old=True),  # this host's: by pid, elsewhere
        made(spills / "duckdb-live-pod-9-bbb", old=True, file="duckdb_temp_storage_DEFAULT-0.tmp"),
    ]
    os.utime(kept[-1] / "duckdb_temp_storage_DEFAULT-0.tmp")  # written to now
    maintain(lake)
    assert [p for p in gone if p.exists()] == [] and [p for p in kept if not p.exists()] == []
