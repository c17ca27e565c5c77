"""Settings from the environment: what a user who set one variable expects of the others."""

from __future__ import annotations

import pytest

from derivlake.config import DrainSettings, KafkaSettings


def test_clients_find_the_embedded_broker_on_the_port_it_was_started_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("DERIVLAKE_BROKER_HOST", raising=False)
    monkeypatch.setenv("DERIVLAKE_BROKER_PORT", "19092")
    assert KafkaSettings.from_env().bootstrap_servers == "127.0.0.1:19092"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9093,kafka-2:9093")  # an explicit one wins
    assert KafkaSettings.from_env().bootstrap_servers == "kafka-1:9093,kafka-2:9093"


def test_the_row_bound_of_a_drain_batch_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DERIVLAKE_DRAIN_BATCH_ROWS", raising=False)
    assert DrainSettings.from_env().batch_rows == 350_000
    monkeypatch.setenv("DERIVLAKE_DRAIN_BATCH_ROWS", "120000")
    assert DrainSettings.from_env().batch_rows == 120_000
