"""The feeds' producer configuration: the operator's KAFKA_EXTRA_CONFIG wins over the built-in tuning."""

from __future__ import annotations

import json

import pytest

from derivlake.config import KafkaSettings
from derivlake.feed.producer import PRODUCER_DEFAULTS, KafkaSink


@pytest.fixture
def producer_configs(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The config every producer of this test is created with (the real client, only observed)."""
    import confluent_kafka

    seen: list[dict] = []

    class Observed(confluent_kafka.Producer):
        def __init__(self, config: dict) -> None:
            seen.append(dict(config))
            super().__init__(config)

    monkeypatch.setattr(confluent_kafka, "Producer", Observed)
    return seen


def test_kafka_extra_config_wins_over_the_producer_defaults(
    monkeypatch: pytest.MonkeyPatch, producer_configs: list[dict]
) -> None:
    """e.g. `enable.idempotence: false` for a broker without IdempotentWrite, or another codec."""
    extra = {"enable.idempotence": False, "compression.type": "zstd", "linger.ms": 500}
    monkeypatch.setenv("KAFKA_EXTRA_CONFIG", json.dumps(extra))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # never reached: nothing is sent
    KafkaSink(KafkaSettings.from_env()).close()
    (config,) = producer_configs
    assert config["enable.idempotence"] == "False"  # librdkafka reads booleans case-insensitively
    assert config["compression.type"] == "zstd" and config["linger.ms"] == "500"
    assert config["batch.size"] == PRODUCER_DEFAULTS["batch.size"]  # the rest of the tuning stays


def test_an_alias_in_kafka_extra_config_wins_too_and_explicit_overrides_win_over_both(
    monkeypatch: pytest.MonkeyPatch, producer_configs: list[dict]
) -> None:
    monkeypatch.setenv("KAFKA_EXTRA_CONFIG", json.dumps({"queue.buffering.max.ms": 250, "acks": "1"}))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    KafkaSink(KafkaSettings.from_env(), overrides={"acks": "all"}).close()
    (config,) = producer_configs
    assert config["queue.buffering.max.ms"] == "250" and "linger.ms" not in config
    assert config["acks"] == "all"
