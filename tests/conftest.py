"""Shared fixtures: a real embedded Kafka broker and a real DuckLake lake on disk."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import pytest

from derivlake import broker
from derivlake.config import BrokerSettings, KafkaSettings, LakeSettings, default_topics
from derivlake.kafka_io import ensure_topics
from tests.postgres_support import PostgresServer, PostgresUnavailable, postgres_bin, start_postgres
from tests.s3_support import CREDENTIALS, S3Server, S3Unavailable, start_s3_server

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURES = SHARED / "fixtures" / "deribit-ws"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def catalog_write_lock(lake: LakeSettings) -> Iterator[None]:
    """Another process holds the catalog's write lock (as a stuck writer would) until exit.

    SQLite: a separate process, as a second SQLite library in this one could drop DuckDB's locks on the
    file. Postgres: a session holding the snapshot table, which every commit inserts into."""
    if not lake.is_sqlite:
        holder = subprocess.Popen(
            [str(postgres_bin("psql")), "-X", "-q", "-A", "-t", lake.catalog.removeprefix("postgres:")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        holder.stdin.write("BEGIN; LOCK TABLE ducklake_snapshot IN EXCLUSIVE MODE; SELECT 'locked';\n")
        holder.stdin.flush()
    else:
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
             "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()",
             str(lake.sqlite_catalog_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


@pytest.fixture(scope="session")
def broker_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerSettings]:
    """One embedded Tansu broker for the whole session, on a free port."""
    settings = BrokerSettings(port=free_port(), run_dir=tmp_path_factory.mktemp("broker"))
    broker.start(settings)
    yield settings
    broker.stop(settings)


@pytest.fixture(scope="session")
def session_kafka(broker_settings: BrokerSettings) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=broker_settings.bootstrap)


@pytest.fixture
def kafka(session_kafka: KafkaSettings) -> KafkaSettings:
    """Kafka settings whose topics are fresh for this test (unique prefix), already created."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    settings = replace(session_kafka, topics=default_topics(3, prefix))
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session; each lake gets a database of its own.

    Without the server binaries the Postgres cases skip, saying so; CI installs them and sets
    DERIVLAKE_REQUIRE_POSTGRES=1, which makes their absence a failure."""
    try:
        server = start_postgres(free_port())
    except PostgresUnavailable as exc:
        require_or_skip("DERIVLAKE_REQUIRE_POSTGRES", "the lake on a Postgres catalog", exc)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One throwaway S3-compatible server for the session; each lake gets a bucket of its own. Without
    it the object-storage cases skip, saying so; CI sets DERIVLAKE_REQUIRE_S3=1."""
    try:
        server = start_s3_server(free_port(), tmp_path_factory.mktemp("s3") / "server.log")
    except S3Unavailable as exc:
        require_or_skip("DERIVLAKE_REQUIRE_S3", "the lake in object storage", exc)
    yield server
    server.stop()


@contextlib.contextmanager
def tmpfs(path: Path, size: str, what: str) -> Iterator[Callable[[str], None]]:
    """A tmpfs of `size` at `path` while the block runs, a filesystem of its own that can fill up (root
    only: without it, `what` is skipped, or fails where DERIVLAKE_REQUIRE_TMPFS=1). Unmounted lazily, so
    files the test still holds open do not keep it mounted. Yields a function that resizes it (space
    back after a full disk)."""
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mount.returncode:
        require_or_skip(
            "DERIVLAKE_REQUIRE_TMPFS", what, f"cannot mount a tmpfs (needs root): {mount.stderr.strip()}"
        )

    def resize(new_size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={new_size}", str(path)], check=True)

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def require_or_skip(required_by: str, what: str, exc: Exception | str) -> NoReturn:
    """A part the tests need (a server they start, a browser) is missing: a failure where `required_by`=1
    (CI), else a skip saying so."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{required_by}=1 but {exc}")
    pytest.skip(f"{what} is not tested here: {exc}")


@pytest.fixture
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys in the environment, where DuckDB's credential chain finds them (and CLI processes inherit them)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask a cloud host's metadata service


@pytest.fixture(params=["sqlite", "postgres"])
def lake_settings(request: pytest.FixtureRequest, tmp_path: Path) -> LakeSettings:
    """A fresh lake on each catalog the product supports: SQLite (the default) and Postgres (compose)."""
    if request.param == "sqlite":
        return LakeSettings(home=tmp_path / "home")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return postgres_lake(server, tmp_path / "home")


@pytest.fixture
def lake_in_env(lake_settings: LakeSettings, monkeypatch: pytest.MonkeyPatch) -> LakeSettings:
    """`lake_settings`, also set in this process's environment, where DAG tasks and CLI code read it."""
    for name, value in lake_env(lake_settings).items():
        monkeypatch.setenv(name, value)
    return lake_settings


def lake_env(lake: LakeSettings) -> dict[str, str]:
    """The environment a CLI process (`python -m derivlake ...`) needs to open `lake`."""
    env = {
        "DERIVLAKE_HOME": str(lake.home),
        "DERIVLAKE_CATALOG": lake.catalog,
        "DERIVLAKE_DATA_PATH": lake.data_path,
    }
    if lake.s3.endpoint:  # the credentials are the environment's own (`s3_credentials`)
        scheme = "https" if lake.s3.use_ssl else "http"
        env |= {"AWS_ENDPOINT_URL": f"{scheme}://{lake.s3.endpoint}", "AWS_REGION": lake.s3.region,
                "DERIVLAKE_S3_URL_STYLE": lake.s3.url_style}  # fmt: skip
    return env


def unreferenced_files(lake: LakeSettings) -> set[str]:
    """Parquet files under the lake's data path that its catalog does not know: not a data file, a
    delete file or a file scheduled for deletion, by name (DuckLake names files by a UUID). Read from
    the catalog's own tables, independently of DuckLake's orphan cleanup."""
    from derivlake.lake.catalog import open_lake

    con = open_lake(lake, read_only=True)
    try:
        known = {
            Path(path).name
            for table in (
                "ducklake_data_file",
                "ducklake_delete_file",
                "ducklake_files_scheduled_for_deletion",
            )
            for (path,) in con.execute(f"SELECT path FROM __ducklake_metadata_lake.{table}").fetchall()
        }
    finally:
        con.close()
    return {f for f in data_files(lake) if Path(f).name not in known}


def data_files(lake: LakeSettings) -> list[str]:
    """Every Parquet file under the lake's data path (commit-guard copies too): on disk, or in its bucket."""
    if lake.in_object_store:
        from tests.s3_support import lake_objects

        return [f for f in lake_objects(lake) if f.endswith(".parquet")]
    return [str(f) for f in Path(lake.data_dir).rglob("*.parquet")]


def guard_copies(lake: LakeSettings) -> list[str]:
    """The commit guard's copies (links on disk, objects in a bucket) still under the data path."""
    return [f for f in data_files(lake) if "/.commit-guard/" in f]


def postgres_lake(server: PostgresServer, home: Path) -> LakeSettings:
    return LakeSettings(home=home, catalog=server.catalog_spec(server.new_database()))


def subscription_data(capture: Path, channel_prefix: str) -> list[dict]:
    """The `data` of every subscription notification on `channel_prefix*` channels of a capture, in order."""
    from derivlake.feed.capture import read_capture

    return [
        r.payload["params"]["data"]
        for r in read_capture(capture)
        if r.kind == "received"
        and isinstance(r.payload, dict)
        and r.payload.get("method") == "subscription"
        and r.payload["params"]["channel"].startswith(channel_prefix)
    ]


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.exists():
        pytest.fail(f"shared fixtures not found at {FIXTURES}: the project expects ../shared beside it")
    return FIXTURES
