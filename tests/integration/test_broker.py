"""The embedded broker: lifecycle truthfulness and a real produce/consume round trip."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from derivlake import broker
from derivlake.config import BrokerSettings, KafkaSettings
from tests.conftest import free_port


def test_produce_and_consume_through_confluent_kafka(kafka: KafkaSettings) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic = kafka.topic("deribit.index").name
    producer = Producer(kafka.client_config(**{"enable.idempotence": True}))
    errors: list[object] = []
    for i in range(100):
        producer.produce(
            topic,
            f'{{"i": {i}}}'.encode(),
            key=b"btc_usd",
            on_delivery=lambda err, _m: errors.append(err) if err else None,
        )
    assert producer.flush(10) == 0
    assert errors == []
    consumer = Consumer(kafka.client_config(**{"group.id": "t", "enable.partition.eof": True}))
    consumer.assign([TopicPartition(topic, 0, 0)])
    values = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            break  # partition EOF
        values.append(msg.value())
    consumer.close()
    assert values == [f'{{"i": {i}}}'.encode() for i in range(100)]


@pytest.fixture
def own_broker(tmp_path) -> BrokerSettings:
    settings = BrokerSettings(port=free_port(), run_dir=tmp_path)
    yield settings
    broker.stop(settings)


def test_status_tells_the_truth_after_stop_and_after_a_crash(own_broker: BrokerSettings) -> None:
    assert broker.status(own_broker).message == "stopped"
    started = broker.start(own_broker)
    assert started.running and own_broker.pid_file.exists()
    assert broker.status(own_broker).running
    assert broker.stop(own_broker).message.startswith("stopped")
    assert not broker.status(own_broker).running
    assert not own_broker.pid_file.exists()

    pid = broker.start(own_broker).pid
    os.kill(pid, signal.SIGKILL)  # crash: the pid file stays behind
    os.waitpid(pid, 0)
    st = broker.status(own_broker)
    assert not st.running
    assert "stale pid file" in st.message
    assert not own_broker.pid_file.exists()
    assert broker.start(own_broker).running  # and it can start again


def test_taken_port_is_a_one_line_error(own_broker: BrokerSettings) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", own_broker.port))
        squatter.listen()
        st = broker.status(own_broker)
        assert not st.running and f"port {own_broker.port} is taken" in st.message
        with pytest.raises(broker.BrokerError, match=rf"port {own_broker.port} is taken.*--port") as err:
            broker.start(own_broker)
        assert "\n" not in str(err.value)


def test_missing_binary_is_a_one_line_error(monkeypatch, own_broker: BrokerSettings) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(broker.BrokerError, match=r"pip install -r requirements\.txt"):
        broker.start(own_broker)


def test_start_and_status_count_the_prefixs_topics_apart_from_the_brokers(
    monkeypatch, own_broker: BrokerSettings
) -> None:
    """With DERIVLAKE_TOPIC_PREFIX=r1. on a broker that already held the unprefixed topics, `broker start`
    said `7 topics` although the broker then held 14: its count was of every topic on the broker."""
    monkeypatch.delenv("DERIVLAKE_TOPIC_PREFIX", raising=False)
    started = broker.start(own_broker)
    assert started.message == (
        f"started: pid {started.pid} on {own_broker.bootstrap}; created 7 of the 7 topics, 7 topics on the broker"
    )
    monkeypatch.setenv("DERIVLAKE_TOPIC_PREFIX", "r1.")
    assert broker.start(own_broker).message == (
        f"running: pid {started.pid} on {own_broker.bootstrap}; created 7 of the 7 topics of prefix 'r1.', "
        "14 topics on the broker"
    )
    assert broker.status(own_broker).message.endswith(
        "; 7 of the 7 topics of prefix 'r1.' present, 14 topics on the broker"
    )
    monkeypatch.setenv("DERIVLAKE_TOPIC_PREFIX", "r2.")
    assert broker.status(own_broker).message.endswith(
        "; 0 of the 7 topics of prefix 'r2.' present, 14 topics on the broker"
    )
