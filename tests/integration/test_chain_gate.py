"""The chain's completeness gate against a real broker and real drains: partition by partition.

A topic's newest event past 08:00 used to open the gate even while another partition's last quotes were
still on the broker. Now each partition must have passed 08:00 in the lake, or be quiet: drained up to
its log end on the broker.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from derivlake.config import KafkaSettings, LakeSettings
from derivlake.ingest.drain import drain_topic
from derivlake.lake.catalog import open_lake
from derivlake.reports.completeness import (
    REQUIRED_TOPIC_KINDS,
    broker_log_ends,
    check_completeness,
    poke_gate,
)
from tests.integration.drain_support import ticker_payload

D = date(2024, 3, 8)


def _ms(hms: str) -> int:
    return int(datetime.fromisoformat(f"{D} {hms}").replace(tzinfo=UTC).timestamp() * 1000)


def _send(kafka: KafkaSettings, kind: str, partition: int, *times: str) -> None:
    """Messages of `kind` with these exchange times, into one partition."""
    from confluent_kafka import Producer

    producer = Producer(kafka.client_config())
    for n, hms in enumerate(times):
        if kind == "deribit.ticker":
            doc = {**ticker_payload(n), "timestamp": _ms(hms)}
        elif kind == "deribit.trades":
            doc = {"trade_id": f"{partition}-{hms}", "instrument_name": "BTC-PERPETUAL", "timestamp": _ms(hms),
                   "direction": "buy", "price": 95000.0, "amount": 10.0}  # fmt: skip
        else:
            doc = {"index_name": "btc_usd", "price": 95000.0, "timestamp": _ms(hms)}
        producer.produce(kafka.topic(kind).name, json.dumps(doc).encode(), partition=partition)
    assert producer.flush(30) == 0


def _lagging(lake: LakeSettings, kafka: KafkaSettings, broker: KafkaSettings | None) -> dict[str, list[int]]:
    topics = {kind: kafka.topic(kind).name for kind in REQUIRED_TOPIC_KINDS}
    con = open_lake(lake, read_only=True)
    try:
        status = check_completeness(con, D, topics, broker_log_ends(broker) if broker else None)
    finally:
        con.close()
    return {kind: [m.partition for m in marks] for kind, marks in status.lagging.items()}


def test_each_partition_must_pass_08_00_or_be_drained_to_its_log_end(kafka: KafkaSettings, tmp_path) -> None:
    lake = LakeSettings(home=tmp_path / "home")
    _send(kafka, "deribit.ticker", 0, "07:59:50", "08:00:10")
    _send(kafka, "deribit.ticker", 1, "07:59:55", "08:00:20")
    _send(kafka, "deribit.ticker", 2, "07:58:00")  # its instruments went quiet before 08:00
    _send(kafka, "deribit.trades", 0, "07:59:00", "08:00:05")
    _send(kafka, "deribit.trades", 2, "07:59:30")  # partition 1: never a trade
    _send(kafka, "deribit.index", 0, "07:59:59", "08:00:01")
    for kind in REQUIRED_TOPIC_KINDS:
        drain_topic(kafka, lake, kind)

    # the lake alone cannot tell a quiet partition from one whose drain is behind
    assert _lagging(lake, kafka, broker=None) == {"deribit.ticker": [2], "deribit.trades": [1, 2]}
    # the broker can: they are drained to their log ends
    assert _lagging(lake, kafka, broker=kafka) == {}
    assert poke_gate(str(D), datetime(2024, 3, 8, 8, 5), 0, settings=lake, kafka=kafka) == (True, D)

    # a 07:59 quote reaches partition 2 late and is not drained yet: the gate waits for it, though the
    # topic's newest event in the lake is long past 08:00
    _send(kafka, "deribit.ticker", 2, "07:59:58")
    assert _lagging(lake, kafka, broker=kafka) == {"deribit.ticker": [2]}
    assert poke_gate(str(D), datetime(2024, 3, 8, 8, 5), 0, settings=lake, kafka=kafka) == (False, D)
    drain_topic(kafka, lake, "deribit.ticker")
    assert _lagging(lake, kafka, broker=kafka) == {}

    # a broker that cannot be reached tells nothing: quiet partitions wait, and the log says why
    down = replace(kafka, bootstrap_servers="127.0.0.1:9")
    con = open_lake(lake, read_only=True)
    try:
        topics = {kind: kafka.topic(kind).name for kind in REQUIRED_TOPIC_KINDS}
        status = check_completeness(con, D, topics, broker_log_ends(down, timeout_s=1))
    finally:
        con.close()
    assert not status.complete and "broker not reachable" in status.describe()
    assert (
        f"{kafka.topic('deribit.trades').name}[1] ingested nothing of the hour before 08:00 yet"
        in status.describe()
    )


def test_no_partition_counts_as_quiet_before_the_feeds_lateness_has_passed(
    kafka: KafkaSettings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Soon after 08:00 a partition at its log end may still get a quote of 07:59: not quiet yet."""
    lake = LakeSettings(home=tmp_path / "home")
    _send(kafka, "deribit.ticker", 0, "07:59:50", "08:00:10")
    _send(kafka, "deribit.ticker", 1, "07:59:55")
    _send(kafka, "deribit.trades", 0, "08:00:00")
    _send(kafka, "deribit.index", 0, "08:00:00")
    for kind in REQUIRED_TOPIC_KINDS:
        drain_topic(kafka, lake, kind)
    monkeypatch.setenv("DERIVLAKE_CHAIN_GATE_LATENESS_S", str(1e10))  # "now" is within it
    assert poke_gate(str(D), datetime(2024, 3, 8, 8, 5), 0, settings=lake, kafka=kafka) == (False, D)
    monkeypatch.setenv("DERIVLAKE_CHAIN_GATE_LATENESS_S", "300")
    assert poke_gate(str(D), datetime(2024, 3, 8, 8, 5), 0, settings=lake, kafka=kafka) == (True, D)


def test_a_feed_that_stopped_before_the_last_hour_holds_the_gate(kafka: KafkaSettings, tmp_path) -> None:
    """Every partition drained to its log end, but the tickers stopped at 06:30: quiet is a stopped feed
    here, not a quiet market (until 2026-12-03 the chain was built from quotes 90 minutes old, or a day).
    Trades, which an illiquid market may well lack for an hour, are not held to it."""
    lake = LakeSettings(home=tmp_path / "home")
    _send(kafka, "deribit.ticker", 0, "06:00:00", "06:30:00")
    _send(kafka, "deribit.ticker", 1, "06:29:00")
    _send(kafka, "deribit.trades", 0, "05:00:00")  # no trade in the last hour: quiet, and fine
    _send(kafka, "deribit.index", 0, "07:59:59", "08:00:01")
    for kind in REQUIRED_TOPIC_KINDS:
        drain_topic(kafka, lake, kind)
    topics = {kind: kafka.topic(kind).name for kind in REQUIRED_TOPIC_KINDS}
    con = open_lake(lake, read_only=True)
    try:
        status = check_completeness(con, D, topics, broker_log_ends(kafka))
    finally:
        con.close()
    assert all(m.quiet for m in status.partitions["deribit.ticker"])
    assert {kind: [m.partition for m in marks] for kind, marks in status.lagging.items()} == {
        "deribit.ticker": [0, 1, 2]
    }
    assert "deribit.ticker: no partition has an event of the hour before 08:00 (is the feed running?)" in (
        status.describe()
    )
    assert poke_gate(str(D), datetime(2024, 3, 8, 8, 5), 0, settings=lake, kafka=kafka) == (False, D)
    _send(kafka, "deribit.ticker", 2, "07:59:58")  # the feed is back with the day's last quotes
    drain_topic(kafka, lake, "deribit.ticker")
    assert poke_gate(str(D), datetime(2024, 3, 8, 8, 5), 0, settings=lake, kafka=kafka) == (True, D)
