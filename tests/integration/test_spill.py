"""DuckDB's spill files: each lake connection spills into a directory of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
from tests.conftest import lake_env

SPILLER = """
import os, sys, time
from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
con = open_lake(LakeSettings.from_env(), read_only=True)
print(con.execute("SELECT current_setting('temp_directory')").fetchone()[0], flush=True)
# a sort of ~6M rows does not fit 100 MB: it spills
total = con.execute(
    "SELECT count(*), sum(y) FROM (SELECT random() AS x, range AS y, repeat('x', 20) AS z "
    "FROM range(6_000_000) ORDER BY x)"
).fetchone()
spilled = os.path.isdir(con.execute("SELECT current_setting('temp_directory')").fetchone()[0])
print(total[0], total[1], spilled, flush=True)
if sys.argv[1] == "hang":
    time.sleep(600)
"""


def _spiller(lake: LakeSettings, cwd: Path, mode: str = "exit") -> subprocess.Popen:
    env = {**os.environ, **lake_env(lake), "DERIVLAKE_DUCKDB_MEMORY_LIMIT": "100MB"}
    return subprocess.Popen(
        [sys.executable, "-c", SPILLER, mode],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_processes_spilling_at_once_from_one_directory_each_get_their_own_spill_files(tmp_path: Path) -> None:
    """With DuckDB's default (`.tmp` in the working directory, the same file names in every process),
    three such sorts at once all failed: "Could not read enough bytes from file
    .tmp/duckdb_temp_storage_..." (duckdb/duckdb#15173, DuckDB 1.5.5)."""
    lake = LakeSettings(home=tmp_path / "home")
    open_lake(lake).close()
    procs = [_spiller(lake, tmp_path) for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-600:] for _, err in outputs]
    # first line: the spill directory; last: the result (a progress bar may come between)
    dirs, results = zip(*((out.splitlines()[0], out.splitlines()[-1]) for out, _ in outputs), strict=True)
    assert results == (f"6000000 {sum(range(6_000_000))} True",) * 3  # each spilled, each right
    assert len(set(dirs)) == 3 and all(Path(d).parent == lake.home / "tmp" for d in dirs)
    assert not any((lake.home / "tmp").iterdir())  # DuckDB removes its directory on close
    assert not (tmp_path / ".tmp").exists()


def test_a_killed_process_spill_directory_is_removed_by_the_next_connection(tmp_path: Path) -> None:
    lake = LakeSettings(home=tmp_path / "home")
    open_lake(lake).close()
    proc = _spiller(lake, tmp_path, mode="hang")
    spill_dir = Path(proc.stdout.readline().strip())
    while not (line := proc.stdout.readline()).startswith("6000000"):
        assert line, "the spiller ended early"
    assert line.split()[-1] == "True"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert spill_dir.is_dir()  # left behind (its files emptied at the end of the query)
    open_lake(lake, read_only=True).close()
    assert not spill_dir.exists()


def test_spill_directories_of_other_hosts_go_once_nothing_in_them_changed_for_the_idle_time(
    tmp_path: Path,
) -> None:
    import socket
    import time

    from derivlake.lake.spill import remove_abandoned

    old = time.time() - 7200

    def spill_dir(name: str, file_age: float | None) -> Path:
        d = tmp_path / name
        d.mkdir()
        if file_age is not None:
            (d / "duckdb_temp_storage_DEFAULT-0.tmp").write_bytes(b"x")
            os.utime(d / "duckdb_temp_storage_DEFAULT-0.tmp", (file_age, file_age))
        os.utime(d, (old, old))
        return d

    idle = spill_dir("duckdb-pod-a-12-abc", old)
    empty = spill_dir("duckdb-pod-b-13-def", None)
    busy = spill_dir("duckdb-pod-c-14-fed", time.time())
    mine = spill_dir(f"duckdb-{socket.gethostname()}-15-cba", old)
    other = spill_dir("not-a-spill-dir", None)
    assert remove_abandoned(tmp_path, idle_s=3600) == 2
    assert not idle.exists() and not empty.exists()
    assert busy.exists() and mine.exists() and other.exists()
    assert remove_abandoned(tmp_path / "missing", idle_s=3600) == 0


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_host_whose_name_extends_ours_keeps_its_spill_directories(tmp_path: Path, monkeypatch) -> None:
    """Pods `airflow-worker` and `airflow-worker-<n>` on one spill root: `duckdb-airflow-worker-<n>-...`
    is the other pod's (its pid lives in that pod's namespace), not the directory of our dead pid <n>."""
    import socket

    from derivlake.lake.spill import remove_abandoned, spill_directory

    monkeypatch.setattr(socket, "gethostname", lambda: "airflow-worker")
    dead = _dead_pid()
    theirs = tmp_path / f"duckdb-airflow-worker-{dead}-4242-abcdef012345"
    mine_dead = tmp_path / f"duckdb-airflow-worker-{dead}-0123456789ab"
    mine_live = tmp_path / f"duckdb-airflow-worker-{os.getppid()}-ba9876543210"
    for d in (theirs, mine_dead, mine_live):
        d.mkdir()
        (d / "duckdb_temp_storage_DEFAULT-0.tmp").write_bytes(b"x")
    new = Path(spill_directory(tmp_path))
    assert new.name.startswith(f"duckdb-airflow-worker-{os.getpid()}-")
    assert theirs.is_dir() and mine_live.is_dir()
    assert not mine_dead.exists()
    # and for maintenance the other pod's directory is another host's: it goes once idle
    old = 0.0
    for path in (
        theirs / "duckdb_temp_storage_DEFAULT-0.tmp",
        theirs,
        mine_live / "duckdb_temp_storage_DEFAULT-0.tmp",
        mine_live,
    ):
        os.utime(path, (old, old))
    assert remove_abandoned(tmp_path, idle_s=3600) == 1
    assert not theirs.exists() and mine_live.is_dir()
