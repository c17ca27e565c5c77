"""Keeping the lake compact while drains commit and analysts read.

Drains every 5 minutes leave one small file per partition per batch. Maintenance merges adjacent
files up to a target size, expires old snapshots and deletes files no snapshot references after a
grace period, and files no transaction ever committed (orphans of killed writers) after a longer one.
DuckLake writes each merged file sorted by the table's `SET SORTED BY` keys (symbol, then time), so
row-group min/max statistics on symbol are narrow and a query on one underlying skips most row groups.
DuckLake makes each step its own snapshot, so readers never see a half-merged partition; a commit
conflict with a concurrent drain is retried with backoff and fails the run only when it persists.

The sort holds each merged file's rows in memory, per thread: a merge that does not fit DuckDB's memory
limit is retried on one thread before it fails the run (measured on a 700 MB day: 128 MB files needed
more than 512 MB on two threads, less on one).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from derivlake.config import ConfigError, LakeSettings
from derivlake.lake.catalog import (
    PARTITIONED_TABLES,
    LakeError,
    catalog_connection_lost,
    commit_lock,
    is_connection_lost,
    lake_tables,
    open_lake,
    with_commit_retries,
)
from derivlake.lake.commit_guard import guarded_commit, guards_commits, now_ms, sweep_guard_dirs
from derivlake.lake.spill import remove_abandoned

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)
SQL = Path(__file__).with_name("sql")
SORT_KEYS = {
    "market.instruments": ("instrument_name", "valid_from"),
    "market.index_prices": ("index_name", "timestamp"),
    "desk.fills": ("account_id", "timestamp"),
    "desk.transfers": ("account_id", "timestamp"),
}
DEFAULT_SORT_KEYS = ("symbol", "timestamp")
# Lake-wide write options: name -> (value as DuckLake reports it, literal to set it with).
WRITE_OPTIONS = {
    # Parquet V2 pages: delta-encoded timestamps and byte-stream-split doubles; on files sorted by
    # (symbol, timestamp) ~35% fewer bytes and ~25% less scan CPU than V1 (bench/bench_lake.py)
    "parquet_version": ("V2", "2"),
    # drains keep writing in arrival order at the cost they were measured at; rows are sorted once,
    # when maintenance merges them
    "sort_on_insert": ("false", "false"),
}


@dataclass(frozen=True)
class MaintenanceConfig:
    target_file_size_bytes: int = 128 * 1024 * 1024
    snapshot_retention: timedelta = timedelta(days=7)
    file_grace: timedelta = timedelta(hours=1)
    # Parquet files no transaction ever committed (a writer killed between its write and its commit)
    # go after this long. A writer's own files are such files until it commits, so it must outlast
    # the longest transaction (a drain's batch takes seconds, a big merge minutes).
    orphan_grace: timedelta = timedelta(days=1)
    conflict_retries: int = 12
    threads: int | None = None  # DuckDB's default: one per core

    def __post_init__(self) -> None:
        """Checked here, where the CLI's options and the DAG's params both arrive: a negative retention
        expired every snapshot but the newest, and a target size of 0 was stored as a lake option."""
        if self.target_file_size_bytes <= 0:
            raise ConfigError(
                f"target file size of {self.target_file_size_bytes / 2**20:g} MB is not positive: give "
                "--target-file-size-mb (param target_file_size_mb) 1 or more"
            )
        for what, value, unit, names in (
            (
                "snapshot retention",
                self.snapshot_retention,
                "days",
                "--retention-days (param retention_days)",
            ),
            ("file grace", self.file_grace, "hours", "--grace-hours"),
            ("orphan grace", self.orphan_grace, "hours", "--orphan-grace-hours (param orphan_grace_hours)"),
        ):
            if value < timedelta(0):
                amount = value / timedelta(**{unit: 1})
                raise ConfigError(f"{what} of {amount:g} {unit} is negative: give {names} 0 or more")


class MergeOutOfMemory(LakeError):
    """A table's merge did not fit the memory limit even on one thread; nothing of it was committed."""


@dataclass
class MaintenanceResult:
    files_before: int = 0  # of every table merged (ops and reports too), like the two counts below
    files_after: int = 0  # drains committing during the run add to it
    files_merged: int = 0  # small files the merges replaced ...
    files_written: int = 0  # ... by these
    partitions: list[dict[str, object]] = field(default_factory=list)
    deleted_files: int = 0
    orphaned_files: int = 0
    seconds: float = 0.0

    def as_metadata(self) -> dict[str, object]:
        tables: dict[str, dict[str, int]] = {}
        for p in self.partitions:
            t = tables.setdefault(str(p["table"]), {"rows": 0, "files": 0, "bytes": 0, "partitions": 0})
            t["rows"] += int(p["rows"])
            t["files"] += int(p["files"])
            t["bytes"] += int(p["bytes"])
            t["partitions"] += 1
        return {
            "files_before": self.files_before,
            "files_after": self.files_after,
            "files_merged": self.files_merged,
            "files_written": self.files_written,
            "deleted_files": self.deleted_files,
            "orphaned_files_deleted": self.orphaned_files,
            "seconds": round(self.seconds, 2),
            "tables": tables,
        }


def _retrying(
    con: duckdb.DuckDBPyConnection, what: str, sql: str | Callable[[], None], retries: int
) -> list[tuple]:
    """Run a statement (or a callable holding a whole transaction) until it stops losing commit races."""
    fn = (lambda: con.execute(sql).fetchall()) if isinstance(sql, str) else sql
    return with_commit_retries(con, what, fn, attempts=retries, first_delay_s=0.2, max_delay_s=5.0) or []


def delete_orphans(con: duckdb.DuckDBPyConnection, grace: timedelta, patience_s: float = 60.0) -> int:
    """Delete the Parquet files under the data path that the catalog does not know, older than `grace`.

    DuckLake lists the data path, then opens each unknown file for its age; one that vanishes in
    between fails the whole call ("Cannot open file"). Files do vanish: a drain whose commit loses a
    race deletes its own, the commit guard drops its links. Measured: 4 of 30 sweeps failed with
    files coming and going beside them, and a slow CI machine failed 8 in a row. The call is idempotent:
    it is run again, for `patience_s` (a sweep is hourly; the chance of a vanish at every try falls
    geometrically with their number)."""
    import duckdb

    # DuckLake compares the files' own modification times here, on either catalog (measured)
    sql = f"CALL ducklake_delete_orphaned_files('lake', older_than => {older_than(grace, sqlite=False)})"
    deadline, attempt = time.monotonic() + patience_s, 0
    while True:
        try:
            return len(con.execute(sql).fetchall())
        except duckdb.IOException as exc:
            if "Cannot open file" not in str(exc) or time.monotonic() > deadline:
                raise
            attempt += 1
            log.info("orphan sweep: a file vanished while the data path was listed, retry %d", attempt)
            time.sleep(min(0.05 * 2**attempt, 1.0) * random.uniform(0.5, 1.0))


def _remove_abandoned_dirs(settings: LakeSettings, grace: timedelta) -> None:
    """What killed processes leave besides files: empty commit-guard directories, and spill
    directories of hosts that are gone, idle for `grace`."""
    local_guards = guards_commits(settings) and not settings.in_object_store
    guards = sweep_guard_dirs(Path(settings.data_dir)) if local_guards else 0
    spills = remove_abandoned(settings.spill_root, grace.total_seconds())
    if guards or spills:
        log.info("removed %d empty commit-guard and %d abandoned spill directories", guards, spills)


def _configure(con: duckdb.DuckDBPyConnection, config: MaintenanceConfig) -> None:
    """Target size, write options and sort keys: catalog writes only when they change (they race the drains)."""
    options = dict(con.execute((SQL / "global_options.sql").read_text()).fetchall())
    target = config.target_file_size_bytes
    wanted = {"target_file_size": (str(target), f"'{target}B'"), **WRITE_OPTIONS}
    for name, (value, literal) in wanted.items():
        if str(options.get(name)) != value:
            _retrying(con, name, f"CALL lake.set_option('{name}', {literal})", config.conflict_retries)
    current = dict(con.execute((SQL / "sort_keys.sql").read_text()).fetchall())
    for table in PARTITIONED_TABLES:
        keys = ", ".join(SORT_KEYS.get(table, DEFAULT_SORT_KEYS))
        if current.get(table) != keys:
            _retrying(
                con, f"sort {table}", f"ALTER TABLE {table} SET SORTED BY ({keys})", config.conflict_retries
            )


def _merge(con: duckdb.DuckDBPyConnection, table: str, config: MaintenanceConfig) -> tuple[int, int]:
    """Merge one table's small files (its own commit); a sort that runs out of memory is retried on one thread.
    Returns the files replaced and the files written.

    Not through the commit guard: DuckLake keeps a merge's files when its COMMIT raises (tested)."""
    import duckdb

    schema, name = table.split(".")
    merge = f"CALL ducklake_merge_adjacent_files('lake', '{name}', schema => '{schema}')"
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    for attempt in dict.fromkeys((threads, 1)):  # the configured threads, then one if that differs
        con.execute(f"SET threads = {attempt}")
        t0 = time.monotonic()
        try:
            merged = _retrying(con, f"merge {table}", merge, config.conflict_retries)
        except duckdb.OutOfMemoryException as exc:
            failure = str(exc).splitlines()[0]
            log.warning("merge %s: out of memory with threads=%d (%s)", table, attempt, failure)
            continue
        finally:
            con.execute(f"SET threads = {threads}")
        # one row per merge: (schema, table, files processed, files created)
        replaced, written = sum(r[2] for r in merged), sum(r[3] for r in merged)
        if merged:
            log.info("merge %s: %d files -> %d in %.1fs with threads=%d", table, replaced, written,
                     time.monotonic() - t0, attempt)  # fmt: skip
        return replaced, written
    limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    raise MergeOutOfMemory(
        f"merge {table}: sorting files of up to {config.target_file_size_bytes / 2**20:.0f} MB does not fit "
        f"DuckDB's memory limit of {limit} even on one thread ({failure}). Raise "
        "DERIVLAKE_DUCKDB_MEMORY_LIMIT or lower the target file size (param target_file_size_mb). "
        f"Nothing of {table}'s merge was committed; tables merged before it stay merged"
    )


def older_than(age: timedelta, sqlite: bool) -> str:
    """DuckLake's `older_than` for "at least `age` ago", on a SQLite catalog one day earlier.

    DuckLake 1.5.5 on a SQLite catalog compares snapshot and deletion times by their date. A file
    replaced at 14:00 counted as scheduled at midnight, so a one-hour grace deleted it at once, under
    queries still reading it, and snapshots expired up to a day before their retention. One more day
    keeps every snapshot and file at least as long as asked; they go up to a day later. A Postgres
    catalog compares the times themselves (measured), and a day more there would keep a day of
    replaced files on disk for nothing. Zero means everything, as asked.
    """
    if age <= timedelta(0):
        return "now()"
    return f"now() - INTERVAL {int((age + timedelta(days=1 if sqlite else 0)).total_seconds())} SECOND"


def table_files(con: duckdb.DuckDBPyConnection, tables: list[str]) -> int:
    """Live data files of `tables`; counted over the tables merged, as `files_merged`/`files_written` are."""
    sql = (SQL / "table_files.sql").read_text()
    return sum(
        con.execute(sql.format(schema=schema, name=name)).fetchone()[0]
        for schema, name in (table.split(".") for table in tables)
    )


def partition_stats(con: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    """Rows, files and bytes per table and date partition, from the catalog's file list."""
    stats = []
    for table in PARTITIONED_TABLES:
        schema, name = table.split(".")
        rows = con.execute(
            (SQL / "partition_stats.sql").read_text().format(schema=schema, name=name)
        ).fetchall()
        stats += [
            {"table": table, "date": d, "rows": int(r), "files": int(f), "bytes": int(b)}
            for d, r, f, b in rows
        ]
    return stats


def _record_table_stats(
    con: duckdb.DuckDBPyConnection, settings: LakeSettings, partitions: list[dict[str, object]], retries: int
) -> None:
    """One ops.table_stats record per run. Its time is fixed before the first try, so a retry after a
    COMMIT that lost its connection (which the catalog may have applied) can find it and not write
    the stats a second time."""
    measured_at = datetime.now(UTC).replace(tzinfo=None)
    unconfirmed = False

    def record() -> None:
        nonlocal unconfirmed
        if unconfirmed:
            unconfirmed = False
            (n,) = con.execute((SQL / "stats_recorded.sql").read_text(), [measured_at]).fetchone()
            if n:
                log.warning("table stats were committed before the catalog connection dropped; not again")
                return
        begun = now_ms()
        con.execute("BEGIN")
        con.executemany(
            (SQL / "record_table_stats.sql").read_text(),
            [
                [measured_at, *str(p["table"]).split("."), p["date"], p["rows"], p["files"], p["bytes"]]
                for p in partitions
            ],
        )
        try:
            guarded_commit(con, settings, ["ops.table_stats"], begun)
        except Exception as exc:
            unconfirmed = is_connection_lost(exc)
            raise

    _retrying(con, "table stats", record, retries)


def maintain(settings: LakeSettings, config: MaintenanceConfig | None = None) -> MaintenanceResult:
    with catalog_connection_lost(settings, "maintenance"):
        return _maintain(settings, config or MaintenanceConfig())


def _maintain(settings: LakeSettings, config: MaintenanceConfig) -> MaintenanceResult:
    t0 = time.monotonic()
    con = open_lake(settings)
    if config.threads:
        con.execute(f"SET threads = {int(config.threads)}")
    result = MaintenanceResult()
    try:
        # every commit but the merges under the shared commit lock, as a drain's: none lands during
        # another run's merge (on a SQLite catalog that makes the merge start over)
        with commit_lock(settings, "configure the lake"):
            _configure(con, config)
        tables = lake_tables(con)  # ops tables too: they also collect one small file per commit
        result.files_before = table_files(con, tables)
        for table in tables:
            with commit_lock(settings, f"merge {table}", exclusive=True):
                replaced, written = _merge(con, table, config)
            result.files_merged += replaced
            result.files_written += written
        with commit_lock(settings, "expire snapshots and clean up files"):
            _retrying(con, "expire", f"CALL ducklake_expire_snapshots('lake', older_than => {older_than(config.snapshot_retention, settings.is_sqlite)})",
                      config.conflict_retries)  # fmt: skip
            deleted = _retrying(con, "cleanup", f"CALL ducklake_cleanup_old_files('lake', older_than => {older_than(config.file_grace, settings.is_sqlite)})",
                                config.conflict_retries)  # fmt: skip
        result.deleted_files = len(deleted)
        result.orphaned_files = delete_orphans(con, config.orphan_grace)
        _remove_abandoned_dirs(settings, config.orphan_grace)
        result.partitions = partition_stats(con)
        result.files_after = table_files(con, tables)
        if result.partitions:  # an empty lake has nothing to record
            with commit_lock(settings, "record table stats"):
                _record_table_stats(con, settings, result.partitions, config.conflict_retries)
    finally:
        con.close()
    result.seconds = time.monotonic() - t0
    log.info("maintenance: merged %d files into %d; %d files at the start, %d at the end (with what drains "
             "committed meanwhile) in the tables merged; %d date partitions; %d unreferenced and %d orphaned "
             "files deleted, %.1fs",
             result.files_merged, result.files_written, result.files_before, result.files_after,
             len(result.partitions), result.deleted_files, result.orphaned_files, result.seconds)  # fmt: skip
    return result
