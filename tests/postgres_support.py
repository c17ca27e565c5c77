"""A throwaway PostgreSQL server for the tests of the lake on a Postgres catalog (the compose deployment's).

Started from the Debian `postgresql` package's binaries, as the embedded broker is started from its
package: a fresh cluster in a temporary directory, on a free loopback port, stopped at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from derivlake.config import LakeSettings


class PostgresUnavailable(RuntimeError):
    pass


def _bin_dir() -> Path:
    newest = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    pg_ctl = shutil.which("pg_ctl") or (newest[-1] if newest else None)
    if not pg_ctl:
        raise PostgresUnavailable("no PostgreSQL server binaries (Debian: apt-get install postgresql)")
    return Path(os.path.realpath(pg_ctl)).parent


def postgres_bin(name: str) -> Path:
    return _bin_dir() / name


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int

    @property
    def as_user(self) -> list[str]:
        # initdb and postgres refuse to run as root
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.as_user, *args], capture_output=True, text=True)
        if done.returncode:
            raise PostgresUnavailable(
                f"{' '.join(args[:2])} failed: {done.stderr.strip() or done.stdout.strip()}"
            )

    def start(self) -> None:
        data = self.root / "data"
        self._run(str(self.bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.resume()

    def halt(self) -> None:
        """Stop the server as a crash or a failover does (its data stays; `resume` starts it again)."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop")

    def resume(self) -> None:
        data = self.root / "data"
        # the server's defaults (100 connections) as a deployment has them; fsync off: a test cluster
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        with contextlib.suppress(PostgresUnavailable):  # already stopped, or never started
            self.halt()
        shutil.rmtree(self.root, ignore_errors=True)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        done = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", dbname, "-c", sql],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout.strip()

    def new_database(self) -> str:
        name = f"lake_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name}")
        return name

    def catalog_spec(self, dbname: str) -> str:
        return f"postgres:dbname={dbname} host=127.0.0.1 port={self.port} user=postgres"


def start_postgres(port: int) -> PostgresServer:
    root = Path(
        tempfile.mkdtemp(prefix="derivlake-pg-")
    )  # not under pytest's 0700 tmp: the server user reads it
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    server = PostgresServer(_bin_dir(), root, port)
    try:
        server.start()
    except Exception:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


class CommitReplyCutter:
    """A TCP proxy in front of the test server that, once armed, cuts the connection that just sent a
    DuckLake commit (a transaction writing `marker`) after the server has committed it but before its
    reply reaches the client: the ambiguous commit of a failover or a network cut at the worst moment,
    which stopping the server cannot cause (or, `applied=False`, just before the server gets it).
    Speaks nothing of the protocol beyond spotting the simple-query COMMIT and its CommandComplete.

    It runs in a process of its own: DuckDB holds the GIL through some calls that reach the catalog,
    and a proxy thread in the same process could then not forward their bytes."""

    def __init__(
        self, upstream_port: int, marker: bytes = b"ducklake_snapshot VALUES", applied: bool = True
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.armed = ctx.Event()
        self.cut = ctx.Event()
        ports = ctx.SimpleQueue()
        self._proc = ctx.Process(
            target=_serve_cutter,
            args=(upstream_port, marker, applied, self.armed, self.cut, ports),
            daemon=True,
        )
        self._proc.start()
        self.upstream_port = upstream_port
        self.port = ports.get()

    def route(self, lake: LakeSettings) -> LakeSettings:
        """The same lake, its catalog reached through this proxy."""
        via = lake.catalog.replace(f"port={self.upstream_port}", f"port={self.port}")
        return dataclasses.replace(lake, catalog=via)

    def close(self) -> None:
        self._proc.terminate()
        self._proc.join()


COMMIT_QUERY = b"Q\x00\x00\x00\x0bCOMMIT\x00"
COMMIT_DONE = b"C\x00\x00\x00\x0bCOMMIT\x00"


def _serve_cutter(upstream_port: int, marker: bytes, applied: bool, armed, cut, ports) -> None:
    """The cutter's process: accept, and pipe each connection both ways in two threads."""

    def up(client: socket.socket, server: socket.socket, state: dict) -> None:
        tail = b""
        with contextlib.suppress(OSError):
            while chunk := client.recv(65536):
                seen = tail + chunk  # a marker may straddle two reads
                if armed.is_set() and marker in seen:
                    state["writing"] = True
                if state["writing"] and COMMIT_QUERY in seen:
                    if not applied and armed.is_set():
                        armed.clear()
                        cut.set()
                        break  # the server sees the connection go mid-transaction: it rolls back
                    state["committing"] = True
                tail = seen[-64:]
                server.sendall(chunk)
        _close(client, server)

    def down(server: socket.socket, client: socket.socket, state: dict) -> None:
        with contextlib.suppress(OSError):
            while chunk := server.recv(65536):
                if state["committing"] and COMMIT_DONE in chunk and armed.is_set():
                    armed.clear()
                    cut.set()
                    break  # committed on the server; the client never hears of it
                client.sendall(chunk)
        _close(client, server)

    listener = socket.create_server(("127.0.0.1", 0))
    ports.put(listener.getsockname()[1])
    while True:
        client, _ = listener.accept()
        server = socket.create_connection(("127.0.0.1", upstream_port))
        state = {"writing": False, "committing": False}
        threading.Thread(target=up, args=(client, server, state), daemon=True).start()
        threading.Thread(target=down, args=(server, client, state), daemon=True).start()


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()
