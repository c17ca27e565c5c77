"""The feeds against a real broker: determinism, fault accounting, delivery failures, capture replay."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from derivlake import broker
from derivlake.config import BrokerSettings, KafkaSettings, default_topics
from derivlake.feed.producer import DeliveryFailed, KafkaSink
from derivlake.feed.replay import replay
from derivlake.feed.simulator import SimulatorConfig, simulate
from derivlake.kafka_io import ensure_topics
from tests.conftest import free_port

SHORT = dict(start=datetime(2024, 12, 26, 7, 40, tzinfo=UTC), end=datetime(2024, 12, 26, 8, 20, tzinfo=UTC))


def consume_all(settings: KafkaSettings, kind: str) -> list:
    """Every message of a topic, in partition order, read until end of every partition."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    spec = settings.topic(kind)
    consumer = Consumer(
        settings.client_config(**{"group.id": f"t-{uuid.uuid4().hex}", "enable.partition.eof": True})
    )
    consumer.assign([TopicPartition(spec.name, p, OFFSET_BEGINNING) for p in range(spec.partitions)])
    out: dict[int, list] = {p: [] for p in range(spec.partitions)}
    at_eof: set[int] = set()
    idle = 0
    while len(at_eof) < spec.partitions and idle < 10:
        msg = consumer.poll(1.0)
        if msg is None:
            idle += 1
            continue
        idle = 0
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                at_eof.add(msg.partition())
            continue
        at_eof.discard(msg.partition())
        out[msg.partition()].append(msg)
    consumer.close()
    assert len(at_eof) == spec.partitions, f"did not reach the end of {spec.name}"
    return [m for p in sorted(out) for m in out[p]]


def fresh_topics(base: KafkaSettings) -> KafkaSettings:
    settings = replace(base, topics=default_topics(3, f"t{uuid.uuid4().hex[:8]}."))
    ensure_topics(settings)
    return settings


def dump(settings: KafkaSettings) -> dict:
    return {
        spec.kind: [
            (m.partition(), m.key(), m.value(), m.headers()) for m in consume_all(settings, spec.kind)
        ]
        for spec in settings.topics
    }


def test_same_seed_gives_the_same_messages_twice(kafka: KafkaSettings) -> None:
    cfg = SimulatorConfig(seed=11, **SHORT)
    other = fresh_topics(kafka)
    s1 = simulate(cfg, KafkaSink(kafka), kafka)
    s2 = simulate(cfg, KafkaSink(other), other)
    assert s1.messages == s2.messages and s1.total > 5000
    first, second = dump(kafka), dump(other)
    assert first == second
    assert sum(len(v) for v in first.values()) == s1.total
    assert all(len(first[k]) == n for k, n in s1.messages.items())


def test_fault_counts_match_what_a_consumer_sees(kafka: KafkaSettings) -> None:
    cfg = SimulatorConfig(
        seed=12, bad_rate=0.01, dup_rate=0.01, late_rate=0.01, gap_rate=0.01, trade_rate=1.0, **SHORT
    )
    stats = simulate(cfg, KafkaSink(kafka), kafka)
    undecodable, located = 0, {}
    for spec in kafka.topics:
        for m in consume_all(kafka, spec.kind):
            located[(m.topic(), m.partition(), m.offset())] = m
            try:
                json.loads(m.value())
            except json.JSONDecodeError:
                undecodable += 1
    assert undecodable == stats.faults["bad_json"] > 0
    assert len(stats.faulty) == sum(n for k, n in stats.faults.items() if k != "gap")
    for d in stats.faulty:
        msg = located[(d.topic, d.partition, d.offset)]
        if d.mark == "bad_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(msg.value())
        elif d.mark == "wrong_type":
            v = json.loads(msg.value())
            assert any(
                isinstance(v.get(f), str) for f in ("mark_price", "timestamp", "price", "change_id", "amount")
            )
    # duplicated trades: same trade_id, identical bytes
    trades = [m.value() for m in consume_all(kafka, "deribit.trades")]
    dup_trades = sum(1 for d in stats.faulty if d.mark == "duplicate" and d.topic.endswith("deribit.trades"))
    assert len(trades) - len(set(trades)) >= dup_trades


def test_broker_stopped_mid_run_raises_with_the_lost_count(tmp_path: Path) -> None:
    own = BrokerSettings(port=free_port(), run_dir=tmp_path)
    broker.start(own)
    settings = KafkaSettings(bootstrap_servers=own.bootstrap)

    class StopsBroker(KafkaSink):
        def send(self, *args: object, **kwargs: object) -> None:
            if self.sent == 300:
                self._producer.flush(10)
                broker.stop(own)
            super().send(*args, **kwargs)

    sink = StopsBroker(settings, overrides={"message.timeout.ms": 3000}, flush_timeout_s=20)
    cfg = SimulatorConfig(
        seed=1, start=datetime(2024, 1, 1, tzinfo=UTC), end=datetime(2024, 1, 1, 0, 10, tzinfo=UTC)
    )
    try:
        with pytest.raises(DeliveryFailed) as info:
            simulate(cfg, sink, settings)
    finally:
        broker.stop(own)
    assert info.value.lost == sink.sent - 300 > 0 and sink.acked == 300
    assert f"{info.value.lost} message(s) lost" in str(info.value)


def test_a_produce_the_client_refuses_stops_the_feed_and_every_lost_message_is_counted(
    kafka: KafkaSettings,
) -> None:
    """`send_many` raising a KafkaError (a fatal idempotence error after a broker restart; here a message
    over `message.max.bytes`, which the client refuses the same way) must not skip the accounting: the
    batch's refused message and the ones after it count as lost, and `close()` settles the rest."""
    sink = KafkaSink(kafka, overrides={"message.max.bytes": 1000, "batch.size": 1000})
    topic = kafka.topic("deribit.ticker").name

    def batch(values: list[bytes]) -> None:
        n = len(values)
        sink.send_many([topic] * n, [b"k"] * n, values, [[] for _ in range(n)])

    batch([b"small"] * 10)
    with pytest.raises(DeliveryFailed) as running:
        batch([b"small"] * 5 + [b"x" * 2000] + [b"small"] * 4)
    assert not running.value.final and "MSG_SIZE_TOO_LARGE" in running.value.first_error
    with pytest.raises(DeliveryFailed) as info:
        sink.close()
    assert info.value.final and kafka.bootstrap_servers in str(info.value)
    assert len(consume_all(kafka, "deribit.ticker")) == sink.acked == 15
    assert info.value.lost == sink.sent - sink.acked == 5


def count_fixture(fixtures_dir: Path) -> dict[str, int]:
    """Independent count of the capture's data messages (regex on the raw lines)."""
    counts = {"ticker": 0, "book": 0, "trades": 0, "instruments": 0}
    for line in (fixtures_dir / "deribit-ws-2021-07-22.capture").read_text().splitlines():
        m = re.search(r'"channel":"(ticker|book|trades)\.', line)
        if m and '"method":"subscription"' in line:
            data = json.loads(line.split(": ", 1)[1])["params"]["data"]
            counts[m[1]] += len(data) if isinstance(data, list) else 1
    for line in (fixtures_dir / "deribit-rest-instruments.capture").read_text().splitlines():
        if "get_instruments" in line and " -> " in line:
            counts["instruments"] += line.count('"instrument_name"')
    return counts


def test_replay_delivers_every_data_message(kafka: KafkaSettings, fixtures_dir: Path) -> None:
    expected = count_fixture(fixtures_dir)
    stats = replay(fixtures_dir, KafkaSink(kafka), kafka)
    assert {k: stats.per_channel[k] for k in expected} == expected
    got = {
        kind: consume_all(kafka, f"deribit.{kind}") for kind in ("ticker", "book", "trades", "instruments")
    }
    assert {k: len(v) for k, v in got.items()} == expected
    for m in got["ticker"]:
        h = dict(m.headers())
        assert (
            h["source"] == b"replay"
            and h["channel"].startswith(b"ticker.")
            and int(h["received_at"]) > 1.6e15
        )
        assert m.key() == json.loads(m.value())["instrument_name"].encode()
