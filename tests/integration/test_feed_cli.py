"""`python -m derivlake feed ...` as a process against a real broker: how it ends when it is stopped
(SIGTERM, as `docker stop` and scripts/demo.sh do) or when the broker goes away, and what it reports."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from derivlake import broker
from derivlake.config import PROJECT_ROOT, BrokerSettings, KafkaSettings
from tests.conftest import free_port
from tests.integration.test_feed_deribit_ws import LiveDeribit, instrument_names

REPORT = re.compile(r"^delivered (\d+) of (\d+) messages to (\S+), (\d+) lost(.*)$", re.M)


def in_topics(kafka: KafkaSettings) -> int:
    """Messages in the run's topics, read to the end of every partition (fresh topics per test).

    Read, not taken from the high watermarks: the embedded broker's watermarks run behind the records
    a consumer gets (they serve here only to see that the feed is under way)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        kafka.client_config(
            **{"group.id": "count", "enable.partition.eof": True, "enable.auto.commit": False}
        )
    )
    try:
        parts = [(spec.name, p) for spec in kafka.topics for p in range(spec.partitions)]
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in parts])
        left, n, idle = set(parts), 0, 0
        while left and idle < 10:
            batch = consumer.consume(10_000, 1.0)
            idle = 0 if batch else idle + 1
            for m in batch:
                if m.error() is None:
                    n += 1
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    left.discard((m.topic(), m.partition()))
        assert not left, f"did not reach the end of {sorted(left)}"
        return n
    finally:
        consumer.close()


def under_way(kafka: KafkaSettings, at_least: int) -> Callable[[], bool]:
    """True once the topics' high watermarks pass `at_least` (cheap to poll)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(kafka.client_config(**{"group.id": "count"}))

    def check() -> bool:
        total = 0
        for spec in kafka.topics:
            for p in range(spec.partitions):
                total += consumer.get_watermark_offsets(TopicPartition(spec.name, p), timeout=10)[1]
        return total > at_least

    return check


def feed_env(kafka: KafkaSettings, **extra: str) -> dict[str, str]:
    prefix = kafka.topic("deribit.ticker").name.removesuffix("deribit.ticker")
    return {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT / "include"),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DERIVLAKE_TOPIC_PREFIX": prefix,
        **extra,
    }


@contextmanager
def feed_process(env: dict[str, str], tmp_path: Path, *args: str) -> Iterator[subprocess.Popen]:
    """The feed CLI, its output in files (a full pipe would stall it); killed if the test fails."""
    out, err = (tmp_path / "feed.out").open("w"), (tmp_path / "feed.err").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "derivlake", "feed", *args], env=env, stdout=out, stderr=err, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
        err.close()


def wait_until(proc: subprocess.Popen, done: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if proc.poll() is not None:
            pytest.fail(f"the feed ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def report(tmp_path: Path) -> tuple[int, int, str, int, str]:
    text = (tmp_path / "feed.out").read_text()
    m = REPORT.search(text)
    assert m, f"no delivery report in {text!r}; stderr: {(tmp_path / 'feed.err').read_text()[-2000:]}"
    return int(m[1]), int(m[2]), m[3], int(m[4]), m[5]


def test_sigterm_mid_run_flushes_and_reports_what_landed(kafka: KafkaSettings, tmp_path: Path) -> None:
    """SIGTERM while the simulator catches up (hundreds of thousands of messages queued in librdkafka):
    the feed stops after the batch in hand, flushes, reports exactly what the topics hold, exits 0."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = (now - timedelta(days=1)).isoformat()
    env = feed_env(kafka)
    args = ("simulate", "--seed", "3", "--start", start, "--end", now.isoformat(), "--realtime")
    with feed_process(env, tmp_path, *args) as proc:
        wait_until(proc, under_way(kafka, 20_000), "20000 messages in the topics")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, (tmp_path / "feed.err").read_text()[-3000:]
    delivered, sent, broker_at, lost, note = report(tmp_path)
    assert broker_at == kafka.bootstrap_servers and note == " (stopped by SIGTERM)"
    assert lost == 0 and delivered == sent == in_topics(kafka) > 20_000
    produced = re.search(r"^produced (\d+) messages", (tmp_path / "feed.out").read_text(), re.M)
    assert produced and int(produced[1]) == sent  # the simulator's own count: nothing generated unsent


@contextmanager
def serving(fake: LiveDeribit) -> Iterator[int]:
    """`fake` served on a free port by an event loop in a thread (the bridge is another process)."""
    from websockets.asyncio.server import serve

    port = free_port()
    loop = asyncio.new_event_loop()
    ready, done = threading.Event(), asyncio.Event()

    async def main() -> None:
        async with serve(fake.handler, "127.0.0.1", port):
            ready.set()
            await done.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(done.set)
        thread.join(10)


def test_sigterm_stops_the_bridge_with_every_message_accounted_for(
    kafka: KafkaSettings, fixtures_dir: Path, tmp_path: Path
) -> None:
    fake = LiveDeribit(fixtures_dir, repeat=True)
    names = set(instrument_names(fake))
    fake.listings = {
        cur: [[i for i in res if i["instrument_name"] in names]] for cur, res in fake.rest.items()
    }
    with serving(fake) as port:
        args = ("deribit", "--url", f"ws://127.0.0.1:{port}", "--interval", "raw")
        with feed_process(feed_env(kafka), tmp_path, *args) as proc:
            wait_until(proc, under_way(kafka, 300), "300 bridged messages")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, (tmp_path / "feed.err").read_text()[-3000:]
    delivered, sent, _, lost, note = report(tmp_path)
    assert note == " (stopped by SIGTERM)" and lost == 0
    assert delivered == sent == in_topics(kafka) > 300
    assert "bridged" in (tmp_path / "feed.out").read_text()


def test_a_running_feed_fails_as_soon_as_deliveries_fail(tmp_path: Path) -> None:
    """The broker goes away under a `--realtime` feed: it must not stay up counting lost messages but
    exit non-zero, naming the broker and the number lost, so that a supervisor restarts it."""
    own = BrokerSettings(port=free_port(), run_dir=tmp_path / "broker")
    own.run_dir.mkdir()
    broker.start(own)
    kafka = KafkaSettings(bootstrap_servers=own.bootstrap)
    now = datetime.now(UTC).replace(microsecond=0)
    args = ("simulate", "--start", (now - timedelta(minutes=2)).isoformat(), "--end", now.isoformat())
    env = feed_env(kafka, KAFKA_EXTRA_CONFIG=json.dumps({"message.timeout.ms": 3000}))
    try:
        with feed_process(env, tmp_path, *args, "--realtime") as proc:
            wait_until(proc, under_way(kafka, 1000), "1000 messages in the topics")
            broker.stop(own)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail("the feed was still running 60 s after its broker went away")
    finally:
        broker.stop(own)
    assert code == 1
    delivered, sent, broker_at, lost, _ = report(tmp_path)
    assert broker_at == own.bootstrap and lost > 0 and delivered + lost == sent
    err = (tmp_path / "feed.err").read_text()
    assert f"error: {lost} message(s) lost: not acknowledged by the broker {own.bootstrap}" in err
