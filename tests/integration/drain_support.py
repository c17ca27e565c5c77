"""Producing test traffic and reading back what the lake holds, by Kafka provenance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from derivlake.config import KafkaSettings, LakeSettings
from derivlake.lake.catalog import open_lake
from tests.conftest import lake_env

ROOT = Path(__file__).resolve().parents[2]


def ticker_payload(i: int, symbol: str = "BTC-27DEC24-100000-C") -> dict:
    """A Deribit-shaped option ticker whose `open_interest` carries the message number."""
    return {
        "instrument_name": symbol, "timestamp": 1_735_000_000_000 + i, "state": "open",
        "stats": {"volume": 1.0, "high": 0.1, "low": 0.05, "price_change": 0.0},
        "open_interest": float(i), "best_bid_price": 0.05, "best_bid_amount": 1.0,
        "best_ask_price": 0.06, "best_ask_amount": 2.0, "index_price": 95000.0, "mark_price": 0.055,
        "last_price": 0.055, "underlying_price": 95500.0, "underlying_index": "BTC-27DEC24",
        "interest_rate": 0.0, "bid_iv": 50.0, "ask_iv": 55.0, "mark_iv": 52.5,
        "greeks": {"delta": 0.4, "gamma": 0.00002, "vega": 100.0, "theta": -50.0, "rho": 10.0},
        "settlement_price": 0.05, "estimated_delivery_price": 95000.0,
    }  # fmt: skip


def produce(kafka: KafkaSettings, kind: str, values: list[bytes], keys: list[bytes] | None = None) -> None:
    from confluent_kafka import Producer

    topic = kafka.topic(kind).name
    producer = Producer(kafka.client_config(**{"enable.idempotence": True, "linger.ms": 5}))
    failed: list[object] = []
    for i, value in enumerate(values):
        key = keys[i] if keys else f"k{i % 17}".encode()
        while True:
            try:
                producer.produce(
                    topic, value, key=key, on_delivery=lambda e, _m: failed.append(e) if e else None
                )
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(30) == 0
    assert not failed, failed


def produce_tickers(kafka: KafkaSettings, start: int, count: int) -> None:
    produce(
        kafka, "deribit.ticker", [json.dumps(ticker_payload(i)).encode() for i in range(start, start + count)]
    )


def lake_provenance(lake: LakeSettings, table: str = "market.options_ticker") -> list[tuple[int, int]]:
    con = open_lake(lake, read_only=True)
    try:
        return con.execute(f"SELECT kafka_partition, kafka_offset FROM {table} ORDER BY ALL").fetchall()
    finally:
        con.close()


def drain_env(kafka: KafkaSettings, lake: LakeSettings, **extra: str) -> dict[str, str]:
    prefix = kafka.topic("deribit.ticker").name.removesuffix("deribit.ticker")
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT / "include"),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        **lake_env(lake),
        "DERIVLAKE_TOPIC_PREFIX": prefix,
        "DERIVLAKE_DRAIN_IDLE_TIMEOUT_S": "5",
        **extra,
    }


def run_drain(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """One drain process to its end (stdout and stderr captured)."""
    return subprocess.run(
        [sys.executable, "-m", "derivlake", "drain", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def spawn_drain(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "derivlake", "drain", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_while_draining(proc: subprocess.Popen, done: Callable[[], bool], timeout_s: float = 60) -> None:
    """Poll `done` until it holds, with the drain `proc` still running (a fault is injected next)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the drain ended too soon or took too long: {proc.communicate()[0]}")
        time.sleep(0.05)
