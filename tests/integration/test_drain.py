"""The drain against the real embedded broker and a real lake on disk."""

from __future__ import annotations

import ast
import json
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest

from derivlake.config import ConfigError, DrainSettings, KafkaSettings, LakeSettings
from derivlake.ingest.drain import Drain, QuarantineThresholdExceeded, TopicMissing, drain_topic
from derivlake.ingest.offsets import OffsetOutOfRange
from derivlake.kafka_io import BrokerUnavailable, ensure_topics
from derivlake.lake.catalog import CatalogBusy, open_lake
from derivlake.lake.maintenance import MaintenanceConfig, maintain
from tests.conftest import (
    catalog_write_lock,
    free_port,
    guard_copies,
    subscription_data,
    tmpfs,
    unreferenced_files,
)
from tests.integration.drain_support import (
    drain_env,
    lake_provenance,
    produce,
    produce_tickers,
    run_drain,
    spawn_drain,
    ticker_payload,
    wait_while_draining,
)

FAST = DrainSettings(idle_timeout_s=5)


def _all_offsets(kafka: KafkaSettings, kind: str) -> list[tuple[int, int]]:
    """Every (partition, offset) the broker holds for the topic, read back by a plain consumer."""
    from confluent_kafka import Consumer, TopicPartition

    spec = kafka.topic(kind)
    consumer = Consumer(kafka.client_config(**{"group.id": "audit", "enable.partition.eof": True}))
    consumer.assign([TopicPartition(spec.name, p, 0) for p in range(spec.partitions)])
    seen, eof = [], set()
    deadline = time.monotonic() + 60
    while len(eof) < spec.partitions and time.monotonic() < deadline:
        for m in consumer.consume(10_000, 1.0):
            if m.error():
                eof.add(m.partition())
            else:
                seen.append((m.partition(), m.offset()))
    consumer.close()
    return sorted(seen)


def test_drain_commits_rows_offsets_and_run_record_then_resumes(kafka: KafkaSettings, lake_settings) -> None:
    produce_tickers(kafka, 0, 500)
    first = drain_topic(kafka, lake_settings, "deribit.ticker", FAST)
    assert first.messages == 500 and first.rows["market.options_ticker"] == 500
    assert first.lag == 0
    produce_tickers(kafka, 500, 250)
    second = drain_topic(kafka, lake_settings, "deribit.ticker", FAST)
    assert second.messages == 250
    assert lake_provenance(lake_settings) == _all_offsets(kafka, "deribit.ticker")
    con = open_lake(lake_settings, read_only=True)
    runs = con.execute(
        "SELECT sum(messages) FROM ops.ingest_runs WHERE topic = ?", [kafka.topic("deribit.ticker").name]
    )
    assert runs.fetchone()[0] == 750
    stored = dict(
        con.execute(
            "SELECT partition, next_offset FROM ops.kafka_offsets WHERE topic = ?",
            [kafka.topic("deribit.ticker").name],
        ).fetchall()
    )
    assert stored == second.offsets
    oi = con.execute(
        "SELECT min(open_interest), max(open_interest), count(*) FROM market.options_ticker"
    ).fetchone()
    assert oi == (0.0, 749.0, 750)


def test_the_cli_shows_a_drains_result_once(kafka: KafkaSettings, lake_settings) -> None:
    """Its summary went to stdout and, as an INFO log line, to stderr: a terminal showed it twice."""
    produce_tickers(kafka, 0, 20)
    done = run_drain(drain_env(kafka, lake_settings), "--topic", "deribit.ticker")
    assert done.returncode == 0, done.stdout + done.stderr
    name = kafka.topic("deribit.ticker").name
    assert done.stdout.startswith(f"{name}: 20 messages (") and done.stdout.count("\n") == 1, done.stdout
    assert f"{name}: 20 messages" not in done.stderr, done.stderr


def test_a_drain_runs_its_duckdb_on_the_threads_it_is_given(kafka: KafkaSettings, lake_settings) -> None:
    import duckdb

    default = duckdb.connect().execute("SELECT current_setting('threads')").fetchone()[0]
    threads = 1 if default > 1 else 2  # not DuckDB's own choice, or the check below could not fail
    produce_tickers(kafka, 0, 300)
    drain = Drain(kafka, lake_settings, kafka.topic("deribit.ticker"), replace(FAST, duckdb_threads=threads))
    result = drain.run()
    assert result.messages == 300 and result.rows["market.options_ticker"] == 300
    assert drain.con.execute("SELECT current_setting('threads')").fetchone()[0] == threads
    assert lake_provenance(lake_settings) == _all_offsets(kafka, "deribit.ticker")
    with pytest.raises(ConfigError, match="DERIVLAKE_DRAIN_DUCKDB_THREADS=-1 is below 0"):
        DrainSettings(duckdb_threads=-1)


def test_bad_messages_go_to_quarantine_with_their_reason(kafka: KafkaSettings, lake_settings) -> None:
    good = [json.dumps(ticker_payload(i)).encode() for i in range(200)]
    wrong_type = ticker_payload(1)
    wrong_type["mark_price"] = "abc"
    missing = ticker_payload(2)
    del missing["timestamp"]
    bad = [
        b'{"instrument_name": "BTC-27DEC24-100000-C", "timest',
        json.dumps(wrong_type).encode(),
        json.dumps(missing).encode(),
        json.dumps(ticker_payload(3, "XYZ-31DEC99-100-C")).encode(),
        b"\xff\xfe not utf-8",
    ]
    produce(kafka, "deribit.ticker", good + bad)
    result = drain_topic(kafka, lake_settings, "deribit.ticker", FAST)
    assert result.rows["market.options_ticker"] == 200
    assert result.quarantined == 5
    con = open_lake(lake_settings, read_only=True)
    got = con.execute("SELECT error, raw_value FROM ops.quarantine").fetchall()
    assert Counter(error for error, _raw in got) == {
        "malformed_json": 2,  # truncated JSON and bytes that are not UTF-8
        "wrong_type:mark_price": 1,
        "missing_field:timestamp": 1,
        "unknown_instrument:XYZ-31DEC99-100-C": 1,
    }
    assert sorted(raw for _error, raw in got) == sorted(bad)  # the raw bytes are kept


def test_quarantine_threshold_fails_the_run_after_committing(kafka: KafkaSettings, lake_settings) -> None:
    produce(
        kafka,
        "deribit.ticker",
        [b"not json"] * 30 + [json.dumps(ticker_payload(i)).encode() for i in range(70)],
    )
    example = r"malformed_json x30 \(e\.g\. partition:offset (\d+):(\d+)\)"
    with pytest.raises(QuarantineThresholdExceeded, match=r"30 of 100 .*" + example) as failed:
        drain_topic(kafka, lake_settings, "deribit.ticker", replace(FAST, quarantine_max_ratio=0.1))
    # nothing lost: the bad ones are in quarantine, the good ones in their table, offsets moved on
    con = open_lake(lake_settings, read_only=True)
    # the example names one message (an offset alone does not, on a topic of several partitions)
    partition, offset = re.search(example, str(failed.value)).groups()
    found = con.execute(
        'SELECT raw_value FROM ops.quarantine WHERE partition = ? AND "offset" = ?',
        [int(partition), int(offset)],
    ).fetchall()
    assert found == [(b"not json",)]
    assert con.execute("SELECT count(*) FROM ops.quarantine").fetchone()[0] == 30
    assert con.execute("SELECT count(*) FROM market.options_ticker").fetchone()[0] == 70


def test_upstream_duplicates_are_dropped_and_counted(kafka: KafkaSettings, lake_settings) -> None:
    trade = {
        "trade_id": "T-1", "trade_seq": 1, "instrument_name": "BTC-PERPETUAL", "timestamp": 1_735_000_000_000,
        "direction": "buy", "price": 95000.0, "amount": 10.0, "index_price": 95010.0, "mark_price": 95005.0,
        "tick_direction": 0,
    }  # fmt: skip
    other = {**trade, "trade_id": "T-2", "trade_seq": 2}
    late = {**trade, "trade_id": "T-3", "timestamp": 1_734_900_000_000}
    key = [b"BTC-PERPETUAL"] * 4
    produce(kafka, "deribit.trades", [json.dumps(t).encode() for t in (trade, trade, other, late)], key)
    r1 = drain_topic(kafka, lake_settings, "deribit.trades", FAST)
    produce(kafka, "deribit.trades", [json.dumps(trade).encode()], key[:1])  # after a reconnect, next run
    r2 = drain_topic(kafka, lake_settings, "deribit.trades", FAST)
    assert (r1.rows["market.trades"], r1.duplicates, r2.rows["market.trades"], r2.duplicates) == (3, 1, 0, 1)
    con = open_lake(lake_settings, read_only=True)
    ids = Counter(r[0] for r in con.execute("SELECT id FROM market.trades").fetchall())
    assert ids == {"T-1": 1, "T-2": 1, "T-3": 1}
    assert (
        con.execute("SELECT date FROM market.trades WHERE id = 'T-3'").fetchone()[0].isoformat()
        == "2024-12-22"
    )


def test_a_trade_id_repeated_with_another_exchange_time_is_kept(kafka: KafkaSettings, lake_settings) -> None:
    """A re-send repeats the message; the same id at another time is not one, and nothing is dropped."""
    trade = {
        "trade_id": "T-9", "instrument_name": "BTC-PERPETUAL", "timestamp": 1_735_000_000_000,
        "direction": "buy", "price": 95000.0, "amount": 10.0,
    }  # fmt: skip
    moved = {**trade, "timestamp": 1_735_000_000_001}
    produce(kafka, "deribit.trades", [json.dumps(t).encode() for t in (trade, moved)], [b"BTC-PERPETUAL"] * 2)
    r1 = drain_topic(kafka, lake_settings, "deribit.trades", FAST)
    produce(kafka, "deribit.trades", [json.dumps(t).encode() for t in (moved, trade)], [b"BTC-PERPETUAL"] * 2)
    r2 = drain_topic(kafka, lake_settings, "deribit.trades", FAST)
    assert (r1.rows["market.trades"], r1.duplicates, r2.rows["market.trades"], r2.duplicates) == (2, 0, 0, 2)


def test_an_instrument_spec_that_changes_back_is_a_new_version(kafka: KafkaSettings, lake_settings) -> None:
    """A repeat of the instrument's latest version is the duplicate, not a repeat of any older one: a
    spec deactivated and reactivated used to lose its reactivation (matched against the first version)."""
    spec = {
        "instrument_name": "BTC-27DEC24-100000-C", "kind": "option", "base_currency": "BTC",
        "expiration_timestamp": 1_735_286_400_000, "strike": 100000.0, "option_type": "call", "is_active": True,
    }  # fmt: skip
    off = {**spec, "is_active": False}
    key = [b"BTC-27DEC24-100000-C"] * 3
    produce(kafka, "deribit.instruments", [json.dumps(v).encode() for v in (spec, spec, off)], key)
    r1 = drain_topic(kafka, lake_settings, "deribit.instruments", FAST)
    produce(kafka, "deribit.instruments", [json.dumps(v).encode() for v in (off, spec, spec)], key)
    r2 = drain_topic(kafka, lake_settings, "deribit.instruments", FAST)
    got = (r1.rows["market.instruments"], r1.duplicates, r2.rows["market.instruments"], r2.duplicates)
    assert got == (2, 1, 1, 2)
    con = open_lake(lake_settings, read_only=True)
    versions = con.execute(
        "SELECT is_active FROM market.instruments ORDER BY valid_from, kafka_partition, kafka_offset"
    ).fetchall()
    assert versions == [(True,), (False,), (True,)]  # the latest version is the active one


def test_fixture_capture_yields_its_option_ticker_and_book_rows(
    kafka: KafkaSettings, lake_settings, fixtures_dir
):
    capture = fixtures_dir / "deribit-ws-2021-07-22.capture"
    tickers, books = subscription_data(capture, "ticker."), subscription_data(capture, "book.")
    # a message without levels (the capture has the snapshot of an empty book) is one row: it used to
    # vanish, neither in the lake nor in quarantine
    expected_levels = sum(max(len(b["bids"]) + len(b["asks"]), 1) for b in books)
    empty = [b for b in books if not b["bids"] and not b["asks"]]
    produce(kafka, "deribit.ticker", [json.dumps(d).encode() for d in tickers])
    produce(kafka, "deribit.book", [json.dumps(d).encode() for d in books])
    assert drain_topic(kafka, lake_settings, "deribit.ticker", FAST).rows["market.options_ticker"] == len(
        tickers
    )
    assert drain_topic(kafka, lake_settings, "deribit.book", FAST).rows["market.book_l2"] == expected_levels
    con = open_lake(lake_settings, read_only=True)
    row = con.execute(
        "SELECT mark_iv, delta, strike_price, expiration, type FROM market.options_ticker "
        "WHERE symbol = ? ORDER BY timestamp LIMIT 1",
        [tickers[0]["instrument_name"]],
    ).fetchone()
    assert row[0] == tickers[0]["mark_iv"] and row[1] == tickers[0]["greeks"]["delta"]
    assert row[4] in ("call", "put") and row[3].hour == 8
    assert len(tickers) > 50 and len(books) > 20 and empty
    markers = con.execute(
        "SELECT symbol, change_id, is_snapshot FROM market.book_l2 WHERE side IS NULL ORDER BY ALL"
    ).fetchall()
    assert markers == sorted((b["instrument_name"], b["change_id"], b["type"] == "snapshot") for b in empty)


def test_kill_9_at_random_moments_loses_and_doubles_nothing(kafka: KafkaSettings, lake_settings) -> None:
    trials = int(os.environ.get("DERIVLAKE_CHAOS_TRIALS", "30"))
    rng = random.Random(7)
    env = drain_env(kafka, lake_settings, DERIVLAKE_DRAIN_BATCH_MESSAGES="300")
    produce_tickers(kafka, 0, 3000)
    produced = 3000
    for _trial in range(trials):
        proc = spawn_drain(env, "--topic", "deribit.ticker")
        time.sleep(rng.uniform(0.3, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if rng.random() < 0.5:
            produce_tickers(kafka, produced, 500)
            produced += 500
    final = run_drain(env, "--topic", "deribit.ticker")
    assert final.returncode == 0, final.stdout + final.stderr
    assert lake_provenance(lake_settings) == _all_offsets(kafka, "deribit.ticker")
    assert len(lake_provenance(lake_settings)) == produced
    # the killed drains' uncommitted files: with no writer left, a zero orphan grace takes them all
    orphans = unreferenced_files(lake_settings)
    result = maintain(lake_settings, MaintenanceConfig(orphan_grace=timedelta(0)))
    assert result.orphaned_files == len(orphans) and unreferenced_files(lake_settings) == set()
    assert lake_provenance(lake_settings) == _all_offsets(kafka, "deribit.ticker")


def test_two_concurrent_drains_of_one_topic_give_exactly_once(kafka: KafkaSettings, lake_settings) -> None:
    env = drain_env(kafka, lake_settings, DERIVLAKE_DRAIN_BATCH_MESSAGES="200")
    open_lake(lake_settings).close()
    produced, outputs = 0, []
    for _round in range(4):
        produce_tickers(kafka, produced, 2000)
        produced += 2000
        procs = [spawn_drain(env, "--topic", "deribit.ticker") for _ in range(2)]
        outputs += [p.communicate(timeout=240)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), outputs[-2:]
    rows, expected = lake_provenance(lake_settings), _all_offsets(kafka, "deribit.ticker")
    missing = sorted(set(expected) - set(rows))
    doubled = [r for r, n in Counter(rows).items() if n > 1]
    # on failure, what each drain said: how far it got and whether it lost a race
    assert not missing and not doubled, (missing[:5], len(missing), doubled[:5], outputs)
    assert len(rows) == produced and rows == expected


def test_a_drain_that_loses_a_race_drains_what_the_winner_left(kafka: KafkaSettings, lake_settings) -> None:
    """Two drains cut a topic into different batches: each can win one partition's compare-and-set
    and lose the next. The loser used to stop there, and when the winner also stopped, the rest of
    the range was left to nobody (CI lost 200 messages). Here the other drain commits one batch
    just before ours and stops, as a drain that lost elsewhere does."""
    from derivlake.ingest.drain import Drain

    produce_tickers(kafka, 0, 1200)
    settings = replace(FAST, batch_messages=100)
    spec = kafka.topic("deribit.ticker")
    others = []

    class StopsAfterOneBatch(Drain):
        def _flush(self, batch, staged, stored, result) -> bool:
            if result.batches:
                result.stopped_early = "lost the next batch to another drain"
                return False
            return super()._flush(batch, staged, stored, result)

    class Raced(Drain):
        def _flush(self, batch, staged, stored, result) -> bool:
            if not others:
                others.append(StopsAfterOneBatch(kafka, lake_settings, spec, settings).run())
            return super()._flush(batch, staged, stored, result)

    ours = Raced(kafka, lake_settings, spec, settings).run()
    (other,) = others
    assert other.messages == 100 and other.stopped_early
    assert ours.races_lost == 1 and not ours.stopped_early and ours.messages == 1100, ours
    assert "1 pass(es) resumed after another drain's commit" in ours.summary()  # what the CLI prints
    assert f"stopped early: {other.stopped_early}" in other.summary()
    rows = lake_provenance(lake_settings)
    assert len(rows) == len(set(rows)) == 1200 and rows == _all_offsets(kafka, "deribit.ticker")


def test_stored_offset_past_the_log_end_stops_until_reset(kafka: KafkaSettings, lake_settings) -> None:
    produce_tickers(kafka, 0, 30)
    drain_topic(kafka, lake_settings, "deribit.ticker", FAST)
    topic = kafka.topic("deribit.ticker").name
    con = open_lake(lake_settings)
    # as after the topic was recreated (or the in-memory broker restarted): the lake is ahead of the log
    con.execute(
        "UPDATE ops.kafka_offsets SET next_offset = next_offset + 1000 WHERE topic = ? AND partition = 0",
        [topic],
    )
    con.close()
    with pytest.raises(
        OffsetOutOfRange, match=rf"{topic}\[0\]: stored offset \d+ is past the log end .*1000 offsets"
    ):
        drain_topic(kafka, lake_settings, "deribit.ticker", FAST)
    drain_topic(kafka, lake_settings, "deribit.ticker", FAST, reset_offsets="latest")
    con = open_lake(lake_settings, read_only=True)
    assert con.execute("SELECT partition, messages_affected FROM ops.offset_resets").fetchall() == [(0, 1000)]


@pytest.mark.parametrize("reset", ["earliest", "latest"])
def test_a_recreated_topic_stops_until_reset_even_past_its_stored_offsets(
    kafka: KafkaSettings, lake_settings, reset: str
) -> None:
    """Deleted and created again (or an in-memory broker restarted), a topic starts its offsets over.
    Once the new log grew past the stored offsets, the drain used to go on from them, skipping the
    new topic's first messages: the topic id (KIP-516) the offsets belong to now tells."""
    from confluent_kafka.admin import AdminClient

    produce_tickers(kafka, 0, 30)
    drain_topic(kafka, lake_settings, "deribit.ticker", FAST)
    topic = kafka.topic("deribit.ticker").name
    admin = AdminClient(kafka.client_config())
    admin.delete_topics([topic])[topic].result(15)
    ensure_topics(kafka)
    produce_tickers(kafka, 1000, 300)  # every partition's new log passes its stored offset
    new = set(_all_offsets(kafka, "deribit.ticker"))
    with pytest.raises(OffsetOutOfRange, match=rf"{re.escape(topic)}\[\d\]: stored offset \d+ belongs to the "
                       r"topic's earlier incarnation \(topic id \S+; the broker's is now \S+: the topic was"):  # fmt: skip
        drain_topic(kafka, lake_settings, "deribit.ticker", FAST)
    before = len(lake_provenance(lake_settings))
    assert before == 30  # nothing drained
    result = drain_topic(kafka, lake_settings, "deribit.ticker", FAST, reset_offsets=reset)
    con = open_lake(lake_settings, read_only=True)
    resets = con.execute("SELECT reason, messages_affected FROM ops.offset_resets").fetchall()
    ids = con.execute(
        "SELECT count(DISTINCT topic_id) FROM ops.kafka_topics WHERE topic = ?", [topic]
    ).fetchone()
    con.close()
    assert {r for r, _n in resets} == {f"recreated; reset to {reset}"} and ids == (2,)
    if reset == "earliest":  # the new topic whole, once
        assert result.messages == len(new) == 300
        assert len(lake_provenance(lake_settings)) == before + 300
    else:  # from the new log's end: what it skipped is counted
        assert result.messages == 0 and sum(n for _r, n in resets) == 300
    # and the next run goes on from the new offsets, with nothing to reset
    produce_tickers(kafka, 2000, 30)
    assert drain_topic(kafka, lake_settings, "deribit.ticker", FAST).messages == 30


class _RetainedLog:
    """A real consumer whose partition's log start is reported as `log_start`: as after retention
    deleted unread messages, which the embedded broker cannot do (no retention on its in-memory
    storage, no DeleteRecords). Everything else is the real consumer."""

    def __init__(self, consumer, partition: int, log_start: int) -> None:
        self._consumer, self._partition, self._log_start = consumer, partition, log_start

    def __getattr__(self, name: str):
        return getattr(self._consumer, name)

    def get_watermark_offsets(self, tp, *args, **kwargs):
        low, high = self._consumer.get_watermark_offsets(tp, *args, **kwargs)
        return (max(low, self._log_start), high) if tp.partition == self._partition else (low, high)


@pytest.mark.parametrize("reset", ["earliest", "latest"])
def test_stored_offset_before_the_log_start_stops_until_reset(
    kafka: KafkaSettings, lake_settings, monkeypatch: pytest.MonkeyPatch, reset: str
) -> None:
    from derivlake.ingest.drain import Drain

    def produce_keyed(start: int, count: int) -> None:  # keys spread the messages over every partition
        values = [json.dumps(ticker_payload(i)).encode() for i in range(start, start + count)]
        produce(kafka, "deribit.ticker", values, [f"key-{i % 12}".encode() for i in range(count)])

    produce_keyed(0, 30)
    drain_topic(kafka, lake_settings, "deribit.ticker", FAST)
    first = set(_all_offsets(kafka, "deribit.ticker"))
    produce_keyed(30, 30)
    new_on_0 = sorted(o for p, o in _all_offsets(kafka, "deribit.ticker") if p == 0 and (p, o) not in first)
    assert any(p == 0 for p, _ in first) and len(new_on_0) >= 3, "the keys left partition 0 too few messages"
    gone = new_on_0[:2]  # retention deleted these two before any drain read them
    real_consumer = Drain._consumer
    monkeypatch.setattr(
        Drain, "_consumer", lambda self: _RetainedLog(real_consumer(self), 0, log_start=gone[-1] + 1)
    )
    topic = kafka.topic("deribit.ticker").name
    with pytest.raises(
        OffsetOutOfRange,
        match=rf"{topic}\[0\]: stored offset {gone[0]} is before the log start {gone[-1] + 1}: "
        r"2 unread messages were deleted by retention",
    ):
        drain_topic(kafka, lake_settings, "deribit.ticker", FAST)
    assert lake_provenance(lake_settings) == sorted(first)  # nothing was drained

    drain_topic(kafka, lake_settings, "deribit.ticker", FAST, reset_offsets=reset)
    con = open_lake(lake_settings, read_only=True)
    [(partition, old, new, reason, affected)] = con.execute(
        "SELECT partition, old_offset, new_offset, reason, messages_affected FROM ops.offset_resets"
    ).fetchall()
    assert (partition, old, reason) == (0, gone[0], f"retention; reset to {reset}")
    # latest also skips the unread messages retention left before the log end: they count as affected
    skipped = [o for o in new_on_0 if gone[-1] < o < new]
    assert new == gone[-1] + 1 if reset == "earliest" else new >= gone[-1] + 1, (new, new_on_0)
    assert affected == len(gone) + len(skipped)
    assert lake_provenance(lake_settings) == sorted(
        set(_all_offsets(kafka, "deribit.ticker")) - {(0, o) for o in gone + skipped}
    )


def test_locked_catalog_commits_nothing_and_the_next_run_resumes(kafka: KafkaSettings, lake_settings) -> None:
    produce_tickers(kafka, 0, 30)
    drain_topic(kafka, lake_settings, "deribit.ticker", FAST)
    produce_tickers(kafka, 30, 30)
    with (
        catalog_write_lock(lake_settings),
        pytest.raises(
            CatalogBusy,
            match=rf"commit: the lake catalog {re.escape(lake_settings.catalog_spec)}.* stayed locked or in "
            r"conflict for \d+s \(4 attempts\): [^\"]*(database is locked|lock timeout)[^\"]*Nothing of it was committed",
        ),
    ):
        drain_topic(kafka, lake_settings, "deribit.ticker", replace(FAST, commit_retries=4))
    assert len(lake_provenance(lake_settings)) == 30
    drain_topic(kafka, lake_settings, "deribit.ticker", FAST)
    assert lake_provenance(lake_settings) == _all_offsets(kafka, "deribit.ticker")


def test_unreachable_broker_fails_fast_naming_the_servers(lake_settings, caplog, capfd, monkeypatch) -> None:
    """...and librdkafka's own lines go through logging, each once (they were ~20 a second on stderr,
    190 lines around the one error that matters)."""
    from derivlake.kafka_log import CLIENT_LOG

    (repeats,) = CLIENT_LOG.filters
    monkeypatch.setattr(repeats, "_seen", {})  # what earlier tests showed within the minute is held back
    dead = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    t0 = time.monotonic()
    with (
        caplog.at_level("INFO", logger="derivlake.kafka.client"),
        pytest.raises(BrokerUnavailable, match=dead.bootstrap_servers),
    ):
        drain_topic(dead, lake_settings, "deribit.ticker", FAST)
    assert time.monotonic() - t0 < 30
    assert "rdkafka" not in capfd.readouterr().err
    refused = [r for r in caplog.records if "Connection refused" in r.getMessage()]
    # librdkafka retries every ~100 ms for seconds; its own "N identical error(s) suppressed" variant
    # of the line is a second shape
    assert 1 <= len(refused) <= 2, [r.getMessage() for r in refused]


def test_a_broker_that_stops_mid_drain_fails_the_run_after_committing_what_was_read(tmp_path) -> None:
    """librdkafka reports a vanished broker in its logs, not through consume(): the drain used to wait
    out its idle timeout and end successfully, with the lag. It now fails (Airflow retries), naming
    the servers, having committed every message it read, a prefix of each partition."""
    from derivlake import broker
    from derivlake.config import BrokerSettings, default_topics
    from derivlake.kafka_io import ensure_topics

    own = BrokerSettings(port=free_port(), run_dir=tmp_path / "broker")
    broker.start(own)
    try:
        kafka = KafkaSettings(bootstrap_servers=own.bootstrap, topics=default_topics(3))
        ensure_topics(kafka)
        produce_tickers(kafka, 0, 60_000)
        lake = LakeSettings(home=tmp_path / "home")
        open_lake(lake).close()
        proc = spawn_drain(
            drain_env(kafka, lake, DERIVLAKE_DRAIN_BATCH_MESSAGES="500"), "--topic", "deribit.ticker"
        )
        wait_while_draining(proc, lambda: len(lake_provenance(lake)) >= 2000)
        # a crash: a stopping Tansu serves open connections for seconds, the whole topic at this size
        os.kill(int(own.pid_file.read_text().split()[0]), signal.SIGKILL)
    finally:
        broker.stop(own)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    found = re.search(
        rf"Kafka at {re.escape(own.bootstrap)} stopped answering during the drain of deribit\.ticker "
        r"\([^)]+\); (\d+) messages were committed, up to offsets (\{[^}]*\}), and the next run resumes",
        out,
    )
    assert found, out
    committed, offsets = int(found[1]), ast.literal_eval(found[2])
    rows = lake_provenance(lake)
    assert 2000 <= len(rows) == committed < 60_000
    assert rows == sorted((p, o) for p, n in offsets.items() for o in range(n))  # a prefix of each partition


def test_missing_topic_is_named(kafka: KafkaSettings, lake_settings) -> None:
    ghost = replace(kafka, topics=tuple(replace(t, name="ghost." + t.name) for t in kafka.topics))
    with pytest.raises(TopicMissing, match=r"ghost\..*deribit\.ticker does not exist"):
        drain_topic(ghost, lake_settings, "deribit.ticker", FAST)


def test_a_failed_commit_stops_the_batches_queued_behind_it(
    kafka: KafkaSettings, lake_settings, monkeypatch
) -> None:
    """The pipeline has later batches parsed and queued while one commits: if that commit fails, none
    of them may commit (their offsets would skip the failed batch's messages). The failure is real: the
    catalog is locked by another process for the second batch's commit and every retry of it."""
    from contextlib import ExitStack

    from derivlake.ingest.drain import Drain
    from derivlake.lake.catalog import CatalogBusy

    produce_tickers(kafka, 0, 3000)
    real_commit, batches, lock = Drain._commit, [], ExitStack()

    def commit_second_batch_locked(self, staged, stored, new_offsets, started, batch_no, *rest):
        if batch_no == 1 and batch_no not in batches:
            time.sleep(1.0)  # long enough for the next batches to be read, parsed and queued
            lock.enter_context(catalog_write_lock(lake_settings))  # held until the test releases it
        batches.append(batch_no)
        return real_commit(self, staged, stored, new_offsets, started, batch_no, *rest)

    monkeypatch.setattr(Drain, "_commit", commit_second_batch_locked)
    small = replace(FAST, batch_messages=300, commit_retries=2)
    try:
        with pytest.raises(CatalogBusy):
            drain_topic(kafka, lake_settings, "deribit.ticker", small)
    finally:
        lock.close()
    assert set(batches) == {0, 1} and batches.count(1) == 2  # both tries of batch 1, nothing after it
    assert len(lake_provenance(lake_settings)) == 300  # the first batch only

    monkeypatch.setattr(Drain, "_commit", real_commit)
    resumed = drain_topic(kafka, lake_settings, "deribit.ticker", small)
    assert resumed.messages == 2700
    assert lake_provenance(lake_settings) == _all_offsets(kafka, "deribit.ticker")


def test_a_postgres_catalog_that_goes_away_mid_drain(kafka: KafkaSettings, postgres_server, tmp_path) -> None:
    """The catalog's server crashes, restarts or fails over during a drain. A commit that lost its
    connection is retried like a lost race (DuckDB reconnects): a server back within the retries costs
    nothing. One that stays away fails the run with a message naming the catalog and the cause (DuckDB's
    own quoted the catalog query it was running, kilobytes of SQL). Every commit is all or nothing:
    the next run gives exactly once."""
    from tests.conftest import postgres_lake

    lake = postgres_lake(postgres_server, tmp_path / "home")
    # a spec with a password, as a production one has (the test server trusts local connections)
    lake = replace(lake, catalog=f"{lake.catalog} password=s3cret")
    dbname = lake.catalog.split("dbname=", 1)[1].split()[0]
    env = drain_env(kafka, lake, DERIVLAKE_DRAIN_BATCH_MESSAGES="500")
    open_lake(lake).close()
    snapshots = "SELECT count(*) FROM ducklake_snapshot"

    def drain_until_some_batches_committed(env: dict[str, str]) -> subprocess.Popen:
        before = int(postgres_server.psql(snapshots, dbname))
        proc = spawn_drain(env, "--topic", "deribit.ticker")
        wait_while_draining(proc, lambda: int(postgres_server.psql(snapshots, dbname)) >= before + 3)
        return proc

    produced = 0
    # 1. down for good: 3 commit attempts, then a clear failure
    produce_tickers(kafka, produced, 60_000)
    produced += 60_000
    proc = drain_until_some_batches_committed({**env, "DERIVLAKE_COMMIT_RETRIES": "3"})
    postgres_server.halt()
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        postgres_server.resume()
    assert proc.returncode == 1, out
    assert re.search(
        rf"deribit.ticker: FAILED: drain: lost the connection to the lake catalog postgres:dbname={dbname} [^(]*\("
        r"[^)]*Postgres: [^)]*(server closed the connection|Connection refused)[^)]*\)\. "
        r"Every commit is all or nothing",
        out,
    ), out
    # no quoted catalog SQL (DuckDB quotes it after "query"/"COPY" or as "LINE n:"; its own words, as in
    # "Failed to read binary COPY data from Postgres", may say COPY)
    assert not re.search(r'"(COPY|SELECT|INSERT|UPDATE|DELETE|WITH)\b|LINE \d+:', out), out
    assert "s3cret" not in out and "password=***" in out  # named, its password masked
    assert 0 < len(lake_provenance(lake)) < produced
    final = run_drain(env, "--topic", "deribit.ticker")
    assert final.returncode == 0, final.stdout + final.stderr
    assert lake_provenance(lake) == _all_offsets(kafka, "deribit.ticker")

    # 2. back within the retries: the drain rides it out
    produce_tickers(kafka, produced, 60_000)
    produced += 60_000
    proc = drain_until_some_batches_committed(env)
    postgres_server.halt()
    time.sleep(1.5)
    postgres_server.resume()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "lost the catalog connection" in out, out
    assert lake_provenance(lake) == _all_offsets(kafka, "deribit.ticker")
    assert len(lake_provenance(lake)) == produced


@pytest.mark.parametrize(
    ("cut", "where"), [("first commit", "disk"), ("mid-drain", "disk"), ("mid-drain", "s3")]
)
def test_a_commit_whose_reply_is_lost_keeps_its_files_and_is_not_redone(
    kafka: KafkaSettings, postgres_server, tmp_path, cut: str, where: str, request: pytest.FixtureRequest
) -> None:
    """The Postgres catalog applies a commit, then the connection drops before the reply arrives (a
    failover or a network cut at that moment): the offset rows' first commit, or a batch's.

    DuckLake deletes the files of a COMMIT that raised, so the catalog referenced missing files and
    every read of the table failed; the commit guard puts them back (from hard links on disk, from
    server-side copies in a bucket). A batch's retry then finds the
    batch in ops.ingest_runs and goes on: once in the lake, and the run drains everything. It used to
    lose the compare-and-set to its own commit, stop early and blame "another drain"."""
    from tests.postgres_support import CommitReplyCutter

    cutter = CommitReplyCutter(postgres_server.port)
    dbname = postgres_server.new_database()
    direct = LakeSettings(home=tmp_path / "home", catalog=postgres_server.catalog_spec(dbname))
    if where == "s3":
        request.getfixturevalue("s3_credentials")  # in the environment the drain process inherits
        direct = request.getfixturevalue("s3_server").lake(direct.home, direct.catalog)
    lake = cutter.route(direct)
    snapshots = "SELECT count(*) FROM ducklake_snapshot"
    try:
        open_lake(lake).close()
        produce_tickers(kafka, 0, 40_000)
        before = int(postgres_server.psql(snapshots, dbname))
        if cut == "first commit":
            cutter.armed.set()
        proc = spawn_drain(
            drain_env(kafka, lake, DERIVLAKE_DRAIN_BATCH_MESSAGES="500"), "--topic", "deribit.ticker"
        )
        if cut == "mid-drain":
            wait_while_draining(proc, lambda: int(postgres_server.psql(snapshots, dbname)) >= before + 3)
            cutter.armed.set()
        out, _ = proc.communicate(timeout=120)
    finally:
        cutter.close()
    assert cutter.cut.is_set(), "no commit was cut: " + out
    assert proc.returncode == 0, out
    assert re.search(r"lost the catalog connection .*server closed the connection", out), out
    assert re.search(r"restored \d+ file\(s\) DuckLake deleted", out), out
    if cut == "mid-drain":
        assert re.search(r"batch \d+ was committed before the catalog connection dropped", out), out
    assert "another drain" not in out
    assert "deribit.ticker: 40000 messages" in out, out
    assert lake_provenance(direct) == _all_offsets(kafka, "deribit.ticker")
    assert unreferenced_files(direct) == set()  # what was put back is what the catalog committed
    assert guard_copies(direct) == []  # the copies are gone


def test_a_retry_with_the_run_id_of_an_earlier_try_tells_its_batches_apart(
    kafka: KafkaSettings, postgres_server, tmp_path
) -> None:
    """An Airflow retry keeps the run id, so batch numbers repeat across tries. A batch whose COMMIT
    never reached the catalog must not be taken for landed because the earlier try committed a batch
    of the same number: the check matches the offsets the batch moved too."""
    from tests.postgres_support import CommitReplyCutter

    cutter = CommitReplyCutter(postgres_server.port, applied=False)
    dbname = postgres_server.new_database()
    direct = LakeSettings(home=tmp_path / "home", catalog=postgres_server.catalog_spec(dbname))
    lake = cutter.route(direct)
    small = DrainSettings(idle_timeout_s=5, batch_messages=500)
    run_id = "scheduled__2026-11-30T08:00:00+00:00:deribit.ticker"
    try:
        produce_tickers(kafka, 0, 2000)
        assert drain_topic(kafka, lake, "deribit.ticker", small, run_id=run_id).messages == 2000  # try 1
        produce_tickers(kafka, 2000, 2000)
        cutter.armed.set()
        second = drain_topic(kafka, lake, "deribit.ticker", small, run_id=run_id)  # try 2
    finally:
        cutter.close()
    assert cutter.cut.is_set()
    assert second.messages == 2000 and not second.stopped_early, second
    assert lake_provenance(direct) == _all_offsets(kafka, "deribit.ticker")


def test_full_disk_commits_nothing_and_the_next_run_resumes(kafka: KafkaSettings, tmp_path) -> None:
    data = tmp_path / "small"
    data.mkdir()
    with tmpfs(data, "64k", "a full disk") as resize:
        lake = LakeSettings(home=tmp_path / "home", data_path=f"{data}/")
        produce_tickers(kafka, 0, 20_000)  # a Parquet file well over the 64 KiB left
        with pytest.raises(Exception, match="No space left on device") as failed:
            drain_topic(kafka, lake, "deribit.ticker", FAST)
        assert str(data) in str(failed.value), failed.value  # where: the operator knows which disk
        con = open_lake(lake, read_only=True)
        assert con.execute("SELECT count(*) FROM market.options_ticker").fetchone()[0] == 0
        assert con.execute("SELECT max(next_offset) FROM ops.kafka_offsets").fetchone()[0] == -1
        con.close()
        resize("64m")  # space is back
        resumed = drain_topic(kafka, lake, "deribit.ticker", FAST)
        assert resumed.messages == 20_000
        assert len(lake_provenance(lake)) == 20_000


def test_book_batches_are_cut_at_the_row_budget(kafka: KafkaSettings, lake_settings) -> None:
    """A book message explodes into a row per level: the drain sizes its batches by the rows they
    project to, so a batch of book holds what a batch of tickers holds, not 14 times more."""
    levels = [["new", 60000.0 + i, 1.0] for i in range(5)]
    books = [
        {"type": "change", "timestamp": 1766736000000 + i, "instrument_name": "BTC-PERPETUAL",
         "change_id": 1000 + i, "prev_change_id": 999 + i, "bids": levels, "asks": levels}
        for i in range(4000)
    ]  # fmt: skip
    produce(kafka, "deribit.book", [json.dumps(b).encode() for b in books])
    settings = replace(FAST, batch_messages=500, batch_rows=2000)
    result = drain_topic(kafka, lake_settings, "deribit.book", settings)
    assert result.rows["market.book_l2"] == 40_000 and result.duplicates == 0
    con = open_lake(lake_settings, read_only=True)
    numbered = con.execute("SELECT batch_no, rows FROM ops.ingest_runs ORDER BY batch_no").fetchall()
    assert [n for n, _ in numbered] == list(range(len(numbered)))  # the run's batches, in commit order
    rows = [r for _, r in numbered]
    # the run's first read knows nothing of the messages yet: up to batch_messages (500 x 10 rows);
    # from then on each read asks for no more than the row budget has room for
    assert sum(rows) == 40_000 and len(rows) == result.batches
    assert rows[0] == 5000 and all(r <= 2000 for r in rows[1:]) and len(rows) >= 18, rows
