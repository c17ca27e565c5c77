"""Keep a commit's new Parquet files when DuckLake deletes them after a COMMIT that did land.

When a COMMIT raises, DuckLake 1.5.5 deletes the data and delete files its transaction wrote (not a
merge's files: tested). On a network catalog (Postgres) a COMMIT can raise after the server applied
it: the connection dropped before the reply (a failover, a restart, a cut at that moment). The
catalog then references files that no longer exist, and every read of those tables fails ("Cannot
open file"). Measured by cutting the reply to a drain's commit (tests/postgres_support.py).

So, on such catalogs and a local data path, the files a transaction wrote get hard links just before
its COMMIT; when the COMMIT loses its connection, every file DuckLake deleted is linked back. The
ones the catalog did commit are whole again; the others are unreferenced, and the maintenance's
orphan sweep deletes them after its grace. The links go once the COMMIT has returned or failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from derivlake.lake.catalog import is_connection_lost

if TYPE_CHECKING:
    import duckdb

    from derivlake.config import LakeSettings

log = logging.getLogger(__name__)

GUARD_DIR = ".commit-guard"  # under the data path: same filesystem, and swept as orphans if left


def written_since(name: str, since_ms: int) -> bool:
    """Whether a DuckLake file name (ducklake-<uuid v7>[-delete].parquet) was made at or after
    `since_ms`: a v7 UUID starts with its creation time in milliseconds."""
    if not (name.startswith("ducklake-") and name.endswith(".parquet")):
        return False
    head = name[len("ducklake-") :].replace("-", "")[:13]
    if len(head) < 13 or head[12] != "7":
        return False
    try:
        return int(head[:12], 16) >= since_ms
    except ValueError:
        return False


def table_dirs(settings: LakeSettings, tables: Iterable[str], dates: Iterable[date] = ()) -> list[Path]:
    """The directories a transaction writing `tables` (rows of `dates` in partitioned ones) may
    write files in: DuckLake's `<data>/<schema>/<table>[/date=<d>]`."""
    root = Path(settings.data_dir)
    days = sorted(set(dates))
    dirs = []
    for table in sorted(set(tables)):
        base = root.joinpath(*table.split("."))
        dirs.append(base)
        dirs.extend(base / f"date={d.isoformat()}" for d in days)
    return dirs


def now_ms() -> int:
    """A transaction's start for `guarded_commit`, a second early: DuckDB stamps file names with the
    same clock, at millisecond resolution."""
    return int(time.time() * 1000) - 1000


def guards_commits(settings: LakeSettings) -> bool:
    """Only a network catalog can apply a COMMIT whose reply is lost; links need a local data path."""
    return not settings.is_sqlite and "://" not in settings.data_dir


class CommitGuard:
    """Hard links to the files a transaction wrote, taken just before its COMMIT."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / GUARD_DIR / uuid.uuid4().hex
        self.links: list[tuple[Path, Path]] = []

    def protect(self, dirs: Iterable[Path], since_ms: int) -> None:
        """Link every DuckLake file in `dirs` made since `since_ms` (other writers' too: harmless)."""
        for d in dirs:
            try:
                entries = [e.name for e in os.scandir(d) if written_since(e.name, since_ms)]
            except FileNotFoundError:
                continue
            for name in entries:
                if not self.links:
                    self.root.mkdir(parents=True)
                link = self.root / f"{len(self.links)}-{name}"
                try:
                    os.link(d / name, link)
                except FileNotFoundError:  # another transaction's file, deleted since the listing
                    continue
                self.links.append((d / name, link))

    def restore(self) -> list[Path]:
        """Link back every guarded file that is gone; returns the restored paths."""
        restored = []
        for original, link in self.links:
            if not original.exists():
                original.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileExistsError):  # another writer's guard was quicker
                    os.link(link, original)
                    restored.append(original)
        return restored

    def release(self) -> None:
        for _original, link in self.links:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
        with contextlib.suppress(OSError):
            self.root.rmdir()


def guarded_commit(
    con: duckdb.DuckDBPyConnection,
    settings: LakeSettings | None,
    tables: Iterable[str],
    since_ms: int,
    dates: Iterable[date] = (),
) -> None:
    """COMMIT the open transaction, begun at `since_ms` (see `now_ms`), which wrote `tables` (rows of
    `dates` in partitioned ones); on a network catalog a COMMIT that loses its connection keeps its
    files. Without settings (a bare connection), a plain COMMIT."""
    if settings is None or not guards_commits(settings):
        con.execute("COMMIT")
        return
    guard = CommitGuard(Path(settings.data_dir))
    try:
        guard.protect(table_dirs(settings, tables, dates), since_ms)
    except OSError as exc:  # e.g. no hard links on this filesystem: commit unguarded, and say so
        guard.release()
        log.warning("commit guard unavailable (%s); committing without it", exc)
        con.execute("COMMIT")
        return
    try:
        con.execute("COMMIT")
    except Exception as exc:
        if is_connection_lost(exc):
            _restore(guard)
        raise
    finally:
        guard.release()


def sweep_guard_dirs(data_dir: Path, older_than_s: float = 3600.0) -> int:
    """Remove the empty guard directories of processes killed between linking and COMMIT (their
    links are orphans, deleted by the orphan sweep). A guard's directory is empty only for moments
    (made, then linked into; unlinked, then removed), so an hour untouched means abandoned."""
    removed = 0
    cutoff = time.time() - older_than_s
    try:
        entries = list(os.scandir(data_dir / GUARD_DIR))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.rmdir(entry.path)
                removed += 1
        except OSError:  # not empty (links younger than the orphan grace), or gone meanwhile
            continue
    return removed


def _restore(guard: CommitGuard) -> None:
    """Relink what DuckLake deleted; a failure here is logged, the COMMIT's own error goes up."""
    try:
        restored = guard.restore()
    except OSError as exc:
        log.error("the catalog connection dropped during COMMIT and its files could not be relinked: %s", exc)
        return
    if restored:
        log.warning(
            "the catalog connection dropped during COMMIT; relinked %d file(s) DuckLake deleted, in case "
            "the catalog applied it (if not, the orphan sweep removes them)",
            len(restored),
        )
