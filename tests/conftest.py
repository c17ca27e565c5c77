"""Shared fixtures: a real embedded Kafka broker and a real DuckLake lake on disk."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from derivlake import broker
from derivlake.config import BrokerSettings, KafkaSettings, LakeSettings, default_topics
from derivlake.kafka_io import ensure_topics

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURES = SHARED / "fixtures" / "deribit-ws"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def catalog_write_lock(lake: LakeSettings) -> Iterator[None]:
    """Another process holds the SQLite catalog's write lock (as a stuck writer would) until exit.

    A separate process: a second SQLite library in this one could drop DuckDB's locks on the file."""
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


@pytest.fixture
def lake_settings(tmp_path: Path) -> LakeSettings:
    return LakeSettings(home=tmp_path / "home")


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
