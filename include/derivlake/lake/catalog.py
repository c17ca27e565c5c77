"""Opening the DuckLake lake: the one function every component uses.

Extensions come from their PyPI packages (`duckdb-extension-*`) and autoloading from the network is
switched off, so the lake opens on a machine with no network at all.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from derivlake.config import LakeSettings, redact_catalog

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)
T = TypeVar("T")
LAKE_ALIAS = "lake"
SCHEMA_SQL = Path(__file__).with_name("schema.sql")
SQL = Path(__file__).with_name("sql")
PARTITIONED_TABLES = (
    "market.instruments",
    "market.trades",
    "market.book_l2",
    "market.derivative_ticker",
    "market.options_ticker",
    "market.index_prices",
    "desk.fills",
    "desk.transfers",
)


class LakeError(RuntimeError):
    """The lake cannot be opened; the message says why and what to do."""


class LakeMissing(LakeError):
    """A read-only open found no lake: no drain has created it yet (or DERIVLAKE_HOME points elsewhere)."""


def is_commit_conflict(exc: BaseException) -> bool:
    """A commit lost to a concurrent one (DuckLake conflict, or the catalog busy): worth a retry."""
    text = str(exc).lower()
    busy = ("conflict", "database is locked", "busy", "failed to commit", "lock timeout")
    return any(s in text for s in busy)


def short_cause(exc: BaseException) -> str:
    """An error on one line, password masked, without the SQL a Postgres catalog quotes in full (a
    commit's flush is kilobytes of INSERTs; the reason is Postgres's `ERROR:` at its end)."""
    text = " ".join(str(exc).split())
    text = re.sub(r" LINE \d+: .*$", "", text)  # the DuckDB statement that ran the catalog query
    text = text.replace(
        " This probably means the server terminated abnormally before or while processing the request.", ""
    )
    text = re.sub(r'Failed to (?:execute|prepare) (?:query|COPY) ".*": (?:ERROR: )?', "Postgres: ", text)
    text = re.sub(r'Unable to connect to Postgres at ".*?": ', "Postgres: ", text)
    return redact_catalog(text)


# libpq's words for a session that is gone: the server restarted or failed over, or an administrator
# ended it (pg_terminate_backend)
_CONNECTION_LOST = (
    "server closed the connection",
    "terminating connection",
    "no connection to the server",
    "connection refused",
    "could not connect to server",
    "unable to connect to postgres",
    "ssl syscall error",
    "ssl connection has been closed unexpectedly",
    "could not receive data from server",
    "could not send data to server",
    "connection timed out",
)


def is_connection_lost(exc: BaseException) -> bool:
    """DuckDB lost (or could not re-open) its connection to a Postgres catalog."""
    import duckdb

    return isinstance(exc, duckdb.Error) and any(s in str(exc).lower() for s in _CONNECTION_LOST)


class CatalogUnavailable(LakeError):
    """The catalog database went away mid-run; every commit is all or nothing, so rerunning is safe."""


@contextlib.contextmanager
def catalog_connection_lost(settings: LakeSettings, what: str) -> Iterator[None]:
    """A lost catalog connection (DuckDB's error quotes the catalog query it was running, kilobytes of
    SQL) becomes a CatalogUnavailable naming the catalog and what is safe."""
    try:
        yield
    except Exception as exc:
        if not is_connection_lost(exc):
            raise
        raise CatalogUnavailable(
            f"{what}: lost the connection to the lake catalog {redact_catalog(settings.catalog_spec)} "
            f"({short_cause(exc)}). Every commit is all or nothing: what was committed stays, the rest "
            "is not, and the next run starts from the last commit"
        ) from None


def _catalog_of(con: duckdb.DuckDBPyConnection) -> str:
    with contextlib.suppress(Exception):
        sql = "SELECT path FROM duckdb_databases() WHERE database_name = ?"
        return redact_catalog(con.execute(sql, [LAKE_ALIAS]).fetchone()[0])
    return LAKE_ALIAS


class CatalogBusy(LakeError):
    """Commits kept losing to a lock or a concurrent commit through every retry; nothing was committed."""


def with_commit_retries(
    con: duckdb.DuckDBPyConnection,
    what: str,
    fn: Callable[[], T],
    *,
    attempts: int,
    first_delay_s: float,
    max_delay_s: float,
    never_retry: tuple[type[BaseException], ...] = (),
) -> T:
    """Run `fn` (a statement, or a whole transaction) until it stops losing commit races, with
    exponential backoff; a race that persists becomes a CatalogBusy naming the catalog. A lost catalog
    connection is retried too (DuckDB reconnects); if it stays lost, its error goes up to the caller's
    `catalog_connection_lost` (the connection can no longer say which catalog it had)."""
    t0 = time.monotonic()
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            with contextlib.suppress(Exception):  # a failed COMMIT has already ended the transaction
                con.execute("ROLLBACK")
            lost = is_connection_lost(exc)  # retried too: DuckDB reconnects, the server may be back
            if isinstance(exc, never_retry) or not (lost or is_commit_conflict(exc)):
                raise
            if attempt == attempts - 1 and lost:
                raise
            cause = short_cause(exc)
            if attempt == attempts - 1:
                raise CatalogBusy(
                    f"{what}: the lake catalog {_catalog_of(con)} stayed locked or in conflict for "
                    f"{time.monotonic() - t0:.0f}s ({attempts} attempts): {type(exc).__name__}: {cause}. "
                    "Nothing of it was committed; the next run picks up from the last commit"
                ) from None  # the cause, masked, is in the message: the raw one may quote a password
            delay = min(first_delay_s * 2**attempt, max_delay_s)
            log.info(
                "%s: %s (%s), retry %d in %.2fs",
                what,
                "lost the catalog connection" if lost else "conflict with a concurrent commit",
                cause,
                attempt + 1,
                delay,
            )
            time.sleep(delay)
    raise ValueError(f"attempts must be at least 1, not {attempts}")


def extension_path(package_name: str) -> str:
    """Path of the `.duckdb_extension` file shipped by a `duckdb-extension-*` package."""
    import duckdb

    spec = importlib.util.find_spec(f"duckdb_extension_{package_name}")
    if spec is None or not spec.submodule_search_locations:
        raise LakeError(
            f"DuckDB extension package duckdb-extension-{package_name.replace('_', '-')} is not installed; "
            "run `pip install -r requirements.txt`"
        )
    root = spec.submodule_search_locations[0]
    found = glob.glob(f"{root}/extensions/v{duckdb.__version__}/*.duckdb_extension")
    if not found:
        raise LakeError(f"no {package_name} extension for DuckDB {duckdb.__version__} under {root}")
    return found[0]


# DuckDB's sqlite extension scans a file database in a transaction that has not written yet through
# fresh SQLite connections, outside the transaction's own, up to a max rowid read inside it: a reader
# whose DuckLake snapshot predates a merge read the catalog's file list after the merge's commit, saw the
# replaced files deleted and the merged ones (new rowids) cut off, and found committed rows missing
# (2026-12-01). Single-threaded scans read through the transaction's connection: one SQLite snapshot.
# GLOBAL, because DuckLake queries its catalog on connections of its own.
SQLITE_SNAPSHOT_READS = "SET GLOBAL sqlite_disable_multithreaded_scans = true"


def connect_duckdb(catalog_extension: str | None, spill_root: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the lake's extensions (DuckLake and the catalog database's scanner)
    loaded from disk, never downloaded, spilling into a directory of its own under `spill_root`."""
    from derivlake.lake.spill import scratch_connection

    # No progress bar: where `__main__` has no file (a notebook, a REPL, `python -c`) DuckDB prints one to
    # stdout once a query runs 2 s, into the `sql` command's CSV/JSON stream (seen in CI on a slow machine).
    con = scratch_connection(spill_root)
    for name in filter(None, (catalog_extension, "ducklake")):
        con.execute(f"LOAD '{extension_path(name)}'")
    if catalog_extension == "sqlite_scanner":
        con.execute(SQLITE_SNAPSHOT_READS)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # a session setting: not in the connect config
    return con


def _prepare_sqlite_catalog(path: Path) -> None:
    """Create the catalog file in WAL mode so readers never block the drains' commits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")


def open_lake(settings: LakeSettings, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Attach the lake as `lake` and make it the default catalog.

    A writable open also creates the schemas and tables (idempotent); a read-only open of a lake
    that does not exist yet is an error naming the path.
    """
    uses_sqlite = not settings.catalog
    if uses_sqlite and read_only and not settings.sqlite_catalog_path.exists():
        raise LakeMissing(
            f"no lake at {settings.sqlite_catalog_path}; run a drain first or set DERIVLAKE_HOME"
        )
    with _creation_lock(settings, read_only):
        if uses_sqlite and not read_only and not settings.sqlite_catalog_path.exists():
            # only at creation: WAL mode persists in the file, and a second SQLite library touching a
            # catalog that DuckDB's sqlite extension has open can corrupt it
            _prepare_sqlite_catalog(settings.sqlite_catalog_path)
            if not settings.in_object_store:
                Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        con = _attach(settings, read_only)
        con.execute(f"USE {LAKE_ALIAS}")
        if not read_only:
            bootstrap(con, settings)
    return con


def require_lake(settings: LakeSettings) -> None:
    """Raise LakeMissing (`no lake at ...`), as `status` and `sql` do, unless the lake exists. For the
    CLI's writers other than drains: their writable open would create an empty lake under a mistyped
    DERIVLAKE_HOME (drains, which begin a lake, and the DAGs' tasks do not call it)."""
    open_lake(settings, read_only=True).close()


def _creation_lock(settings: LakeSettings, read_only: bool) -> contextlib.AbstractContextManager[None]:
    """Writers of a SQLite lake open it one at a time. The first DAG run's seven drains, opening a
    fresh lake at once, raced to create the catalog and the tables, and six failed their first try.
    (A Postgres catalog gets no lock: `_attach` and `bootstrap` retry instead.)"""
    if read_only:
        return contextlib.nullcontext()
    return _lake_file_lock(settings, ".open.lock", "open the lake", "another writer's open", exclusive=True)


def commit_lock(
    settings: LakeSettings, what: str, exclusive: bool = False
) -> contextlib.AbstractContextManager[None]:
    """Drains commit under a shared lock, maintenance merges under an exclusive one (SQLite lakes).

    On a SQLite catalog a DuckLake transaction cannot commit once any other commit has landed since it
    began ("database is locked"). A merge sorts for a minute or more, so one drain commit, to any table,
    made it start over: one insert 15 s into a 45 s merge cost the whole merge. So drains wait for a
    merge instead, and still commit side by side. A Postgres catalog gets no lock and needs none: a
    drain committing during a merge there does not make the merge start over (tested).
    """
    holder = "the drains' commits" if exclusive else "a maintenance merge"
    return _lake_file_lock(settings, ".commit.lock", what, holder, exclusive)


def locked_commit(
    con: duckdb.DuckDBPyConnection,
    settings: LakeSettings | None,
    what: str,
    fn: Callable[[], T],
    *,
    attempts: int,
    lock_what: str | None = None,
    never_retry: tuple[type[BaseException], ...] = (),
) -> T:
    """A writer's transaction `fn` under the lake's shared commit lock (a maintenance merge waits for
    it, and it for a merge), retried while it loses commit races. Without settings, no lock."""

    def locked() -> T:
        with commit_lock(settings, lock_what or what) if settings else contextlib.nullcontext():
            return fn()

    return with_commit_retries(
        con, what, locked, attempts=attempts, first_delay_s=0.05, max_delay_s=2.0, never_retry=never_retry
    )


@contextlib.contextmanager
def _lake_file_lock(
    settings: LakeSettings, name: str, what: str, holder: str, exclusive: bool
) -> Iterator[None]:
    """An flock on a file beside a SQLite catalog (none for a Postgres one); a wait is logged."""
    if not settings.is_sqlite:
        yield
        return
    import fcntl

    settings.lake_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.lake_dir / name, "a") as lock:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(lock, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            t0 = time.monotonic()
            log.info("%s: waiting for %s", what, holder)
            fcntl.flock(lock, mode)
            log.info("%s: waited %.1fs", what, time.monotonic() - t0)
        yield


# A Postgres session waits for a lock forever by default: a catalog table locked by a stuck session hung
# every drain and merge with no word. With a timeout the commit fails, is retried, and ends in CatalogBusy.
POSTGRES_LOCK_TIMEOUT = "5s"


def attach_statement(settings: LakeSettings, read_only: bool) -> str:
    """The ATTACH of the lake as `lake`, for DuckDB here and in the DuckDB CLI's init script."""
    spec = settings.catalog_spec
    if spec.startswith("postgres:"):
        # the libpq defaults a deployment needs, unless the spec sets them: who holds a lock, and a bound on waiting
        if "application_name=" not in spec:
            spec += " application_name=derivlake"
        if "options=" not in spec:
            spec += f" options='-c lock_timeout={POSTGRES_LOCK_TIMEOUT}'"
    # Inlining small inserts into the catalog is off: every committed batch is Parquet on disk.
    options = [f"DATA_PATH '{settings.data_dir}'", "DATA_INLINING_ROW_LIMIT 0"]
    if read_only:
        options.append("READ_ONLY")
    quoted = spec.replace("'", "''")
    return f"ATTACH 'ducklake:{quoted}' AS {LAKE_ALIAS} ({', '.join(options)})"


def _attach(settings: LakeSettings, read_only: bool, attempts: int = 10) -> duckdb.DuckDBPyConnection:
    kind = settings.catalog_spec.split(":", 1)[0]
    for attempt in range(attempts):
        con = connect_duckdb(
            {"sqlite": "sqlite_scanner", "postgres": "postgres_scanner"}.get(kind), settings.spill_root
        )
        try:
            if settings.in_object_store:
                _reach_object_store(con, settings)
            con.execute(attach_statement(settings, read_only))
            return con
        except LakeError:
            con.close()
            raise
        except Exception as exc:
            con.close()
            text = str(exc)
            if read_only and "creating a new DuckLake is explicitly disabled" in text:
                # the catalog database exists, but the first drain has not initialised the lake in it yet
                raise LakeMissing(
                    redact_catalog(f"no lake in the catalog {settings.catalog_spec} yet; run a drain first")
                ) from None
            if not read_only and "Failed to initialize DuckLake" in text and attempt < attempts - 1:
                time.sleep(min(0.1 * 2**attempt, 2.0))  # another writer is creating the lake right now
                continue
            raise LakeError(
                redact_catalog(f"cannot attach the lake catalog {settings.catalog_spec}: {exc}")
            ) from None  # the cause would quote the password
    raise ValueError(f"attempts must be at least 1, not {attempts}")


def _reach_object_store(con: duckdb.DuckDBPyConnection, settings: LakeSettings) -> None:
    """httpfs and the AWS credential chain for an `s3://` data path; no credentials is a LakeError."""
    import duckdb

    from derivlake.lake.object_store import EXTENSIONS, no_credentials_hint, secret_statement

    for name in EXTENSIONS:
        con.execute(f"LOAD '{extension_path(name)}'")
    try:
        con.execute(secret_statement(settings.s3))
    except duckdb.Error as exc:
        if "Secret Validation Failure" in str(exc):
            raise LakeError(no_credentials_hint(settings.data_dir)) from None
        raise


def lake_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every table of the lake as `schema.table`, ops tables too, sorted."""
    sql = (SQL / "lake_tables.sql").read_text()
    return [t for (t,) in con.execute(sql, [LAKE_ALIAS]).fetchall()]


def bootstrap(con: duckdb.DuckDBPyConnection, settings: LakeSettings) -> None:
    """Create schemas and tables, and partition the data tables by date (idempotent; a writer that
    loses the race to another one creating them finds them made); then bring the tables of a lake made
    by an older version up to schema.sql's columns."""
    from derivlake.lake.schema_sync import declared_columns, sync_columns

    ddl = SCHEMA_SQL.read_text()
    declared = declared_columns(ddl)

    def create() -> None:
        existing = set(lake_tables(con))
        if existing.issuperset(declared):
            return
        from derivlake.lake.commit_guard import guarded_commit, now_ms

        begun = now_ms()
        con.execute("BEGIN")
        con.execute(ddl)
        for table in PARTITIONED_TABLES:
            if table not in existing:
                con.execute(f"ALTER TABLE {table} SET PARTITIONED BY (date)")
        if "ops.offset_row_claims" not in existing:  # two writers may each add one: updates take them all
            con.execute((SQL / "bootstrap_claim_row.sql").read_text())
        guarded_commit(con, settings, ["ops.offset_row_claims"], begun)

    with_commit_retries(
        con, "create the lake's tables", create, attempts=20, first_delay_s=0.05, max_delay_s=1.0
    )
    sync_columns(con, ddl)
