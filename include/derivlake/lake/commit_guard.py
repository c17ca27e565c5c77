"""Keep a commit's new Parquet files when DuckLake deletes them after a COMMIT that did land.

When a COMMIT raises, DuckLake 1.5.5 deletes the data and delete files its transaction wrote (not a
merge's files: tested). On a network catalog (Postgres) a COMMIT can raise after the server applied
it: the connection dropped before the reply (a failover, a restart, a cut at that moment). The
catalog then references files that no longer exist, and every read of those tables fails ("Cannot
open file"). Measured by cutting the reply to a drain's commit (tests/postgres_support.py).

So, on such catalogs, the files a transaction wrote get copies just before its COMMIT: hard links on
a local data path, server-side copies (CopyObject) in a bucket. When the COMMIT loses its connection,
every file DuckLake deleted is put back from its copy. The ones the catalog did commit are whole
again; the others are unreferenced, and the maintenance's orphan sweep deletes them after its grace.
The copies go once the COMMIT has returned or failed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from derivlake.lake.catalog import is_connection_lost

if TYPE_CHECKING:
    import duckdb

    from derivlake.config import LakeSettings

log = logging.getLogger(__name__)
A = TypeVar("A")
R = TypeVar("R")

GUARD_DIR = ".commit-guard"  # under the data path: same filesystem (bucket), and swept as orphans if left


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


def table_dirs(settings: LakeSettings, tables: Iterable[str], dates: Iterable[date] = ()) -> list[str]:
    """The directories (object prefixes, for a bucket) a transaction writing `tables` (rows of `dates`
    in partitioned ones) may write files in: DuckLake's `<data>/<schema>/<table>[/date=<d>]`."""
    root = _data_root(settings)
    days = sorted(set(dates))
    dirs = []
    for table in sorted(set(tables)):
        base = "/".join((root, *table.split(".")))
        dirs.append(base)
        dirs.extend(f"{base}/date={d.isoformat()}" for d in days)
    return dirs


def now_ms() -> int:
    """A transaction's start for `guarded_commit`, a second early: DuckDB stamps file names with the
    same clock, at millisecond resolution."""
    return int(time.time() * 1000) - 1000


def guards_commits(settings: LakeSettings) -> bool:
    """Only a network catalog can apply a COMMIT whose reply is lost; the data path is a local one
    (hard links) or a bucket (server-side copies)."""
    return not settings.is_sqlite and (settings.in_object_store or "://" not in settings.data_dir)


def _data_root(settings: LakeSettings) -> str:
    """The data path as the guard's store addresses it: a directory, or `bucket/prefix` in S3."""
    return settings.data_dir.removeprefix("s3://").rstrip("/")


class _LocalFiles:
    """Guard copies as hard links: instant, and no bytes written."""

    @staticmethod
    def map(fn: Callable[[A], R], items: list[A]) -> list[R]:
        return [fn(item) for item in items]

    def names(self, directory: str) -> list[str]:
        try:
            return [e.name for e in os.scandir(directory)]
        except FileNotFoundError:
            return []

    def keep(self, original: str, copy: str) -> bool:
        Path(copy).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(original, copy)
        except FileNotFoundError:  # another transaction's file, deleted since the listing
            return False
        return True

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def put_back(self, copy: str, original: str) -> bool:
        Path(original).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(copy, original)
        except FileExistsError:  # another writer's guard was quicker
            return False
        return True

    def drop(self, root: str, copies: list[str]) -> None:
        for copy in copies:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(copy)
        with contextlib.suppress(OSError):
            os.rmdir(root)


class _ObjectFiles:
    """Guard copies as server-side copies in the bucket (CopyObject: no bytes through this host)."""

    def __init__(self, fs) -> None:
        self.fs = fs

    @staticmethod
    def map(fn: Callable[[A], R], items: list[A]) -> list[R]:
        """Requests side by side: each costs a round trip (tens of ms on S3), a batch writes a few."""
        return list(_requests().map(fn, items)) if len(items) > 1 else [fn(item) for item in items]

    def names(self, directory: str) -> list[str]:
        from pyarrow.fs import FileSelector, FileType

        infos = self.fs.get_file_info(FileSelector(directory, allow_not_found=True))
        return [i.base_name for i in infos if i.type == FileType.File]

    def keep(self, original: str, copy: str) -> bool:
        try:
            self.fs.copy_file(original, copy)
        except OSError:
            if not self.exists(original):  # another transaction's file, deleted since the listing
                return False
            raise
        return True

    def exists(self, path: str) -> bool:
        from pyarrow.fs import FileType

        return self.fs.get_file_info(path).type != FileType.NotFound

    def put_back(self, copy: str, original: str) -> bool:
        self.fs.copy_file(copy, original)  # if another guard was quicker: the same bytes again
        return True

    def drop(self, root: str, copies: list[str]) -> None:
        def delete(copy: str) -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(copy)

        self.map(delete, copies)


@functools.cache
def _requests() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=16, thread_name_prefix="commit-guard")


class CommitGuard:
    """Copies of the files a transaction wrote (hard links, or server-side copies in a bucket), taken
    just before its COMMIT."""

    def __init__(self, settings: LakeSettings) -> None:
        if settings.in_object_store:
            from derivlake.lake.object_store import s3_filesystem

            self.files: _LocalFiles | _ObjectFiles = _ObjectFiles(s3_filesystem(settings.s3))
        else:
            self.files = _LocalFiles()
        self.root = f"{_data_root(settings)}/{GUARD_DIR}/{uuid.uuid4().hex}"
        self.kept: list[tuple[str, str]] = []  # (original, copy)

    def protect(self, dirs: Iterable[str], since_ms: int) -> None:
        """Copy every DuckLake file in `dirs` made since `since_ms` (other writers' too: harmless).
        Copies made before one fails are kept track of, so `release` drops them."""
        dirs = list(dirs)
        listed = self.files.map(self.files.names, dirs)
        new = [
            f"{d}/{n}"
            for d, names in zip(dirs, listed, strict=True)
            for n in names
            if written_since(n, since_ms)
        ]
        wanted = [
            (original, f"{self.root}/{i}-{original.rsplit('/', 1)[1]}") for i, original in enumerate(new)
        ]
        outcomes = self.files.map(self._keep, wanted)
        self.kept = [pair for pair, outcome in zip(wanted, outcomes, strict=True) if outcome is True]
        failed = [outcome for outcome in outcomes if isinstance(outcome, OSError)]
        if failed:
            raise failed[0]

    def _keep(self, pair: tuple[str, str]) -> bool | OSError:
        try:
            return self.files.keep(*pair)
        except OSError as exc:
            return exc

    def restore(self) -> list[str]:
        """Put back every guarded file that is gone; returns the restored paths."""

        def put_back(pair: tuple[str, str]) -> str | None:
            original, copy = pair
            return (
                original if not self.files.exists(original) and self.files.put_back(copy, original) else None
            )

        return [original for original in self.files.map(put_back, self.kept) if original]

    def release(self) -> None:
        self.files.drop(self.root, [copy for _original, copy in self.kept])


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
    guard = CommitGuard(settings)
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
    (made, then linked into; unlinked, then removed), so an hour untouched means abandoned. (A
    bucket has no directories to leave behind.)"""
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
        log.error("the catalog connection dropped during COMMIT and its files could not be restored: %s", exc)
        return
    if restored:
        log.warning(
            "the catalog connection dropped during COMMIT; restored %d file(s) DuckLake deleted, in case "
            "the catalog applied it (if not, the orphan sweep removes them)",
            len(restored),
        )
