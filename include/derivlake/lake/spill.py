"""Where DuckDB spills: a directory of each connection's own.

DuckDB 1.5.5 names its spill files the same in every process (`duckdb_temp_storage_DEFAULT-0.tmp`), and
its default directory is `.tmp` in the working directory, which Airflow's task processes and analysts'
shells share. Processes spilling there at once read each other's blocks: three concurrent sorts in one
directory all failed with "Could not read enough bytes from file .tmp/duckdb_temp_storage_..."
(reproduced on this version; duckdb/duckdb#15173), and a closing process deletes every spill file there,
others' too. So each connection spills into its own directory under the lake's spill root, named by
host and pid. DuckDB creates it on the first spill and removes it on close; one a killed process left
behind is removed by the next connection on the same host, and one of a host that is gone (a pod
killed while it spilled) by maintenance, once nothing in it has changed for the orphan grace.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


_PID_SUFFIX = re.compile(r"([0-9]+)-[0-9a-f]+")  # what follows `duckdb-<host>-` in a name of ours


def _own_pid(name: str, prefix: str) -> int | None:
    """The pid in this host's spill directory name `<prefix><pid>-<hex>`, None for any other name: the
    directory of a host whose name extends ours (`airflow-worker-311` beside `airflow-worker`) starts
    with our prefix too, but its remainder (`311-<pid>-<hex>`) is not `<pid>-<hex>`."""
    if not name.startswith(prefix):
        return None
    match = _PID_SUFFIX.fullmatch(name[len(prefix) :])
    return int(match.group(1)) if match else None


def spill_directory(root: Path) -> str:
    """A new, unused spill directory under `root` for one connection; stale ones of dead processes on
    this host are removed first (another host's, on a shared volume, are left to that host)."""
    prefix = f"duckdb-{socket.gethostname()}-"
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{prefix}*"):
        pid = _own_pid(stale.name, prefix)
        if pid is not None and pid != os.getpid() and not _alive(pid):
            shutil.rmtree(stale, ignore_errors=True)
    return str(root / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:12]}")


def remove_abandoned(root: Path, idle_s: float) -> int:
    """Remove the spill directories of other hosts in which nothing has changed for `idle_s`: hosts
    that are gone (a replaced pod or worker) never come back for them. DuckDB writes its spill files
    in place, so a live one's files keep changing."""
    prefix = f"duckdb-{socket.gethostname()}-"
    cutoff = time.time() - idle_s
    removed = 0
    for d in root.glob("duckdb-*") if root.is_dir() else ():
        if _own_pid(d.name, prefix) is not None or not d.is_dir():
            continue  # this host's: removed by the next connection once their process is dead
        try:
            newest = max([d.stat().st_mtime, *(f.stat().st_mtime for f in d.iterdir())])
        except OSError:  # removed meanwhile
            continue
        if newest < cutoff:
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    return removed


def scratch_connection(root: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB capped at `DERIVLAKE_DUCKDB_MEMORY_LIMIT` (512MB; DuckDB's own default is 80% of
    RAM) that spills beyond it into a directory of its own under `root`, and downloads nothing."""
    import duckdb

    from derivlake.config import duckdb_memory_limit

    return duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "memory_limit": duckdb_memory_limit(),
            "temp_directory": spill_directory(root),
        }
    )
