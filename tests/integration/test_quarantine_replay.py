"""`quarantine replay`: messages quarantined for what this version did not know (a currency listed
later) move into their tables once it is configured, exactly once, whatever runs beside it or kills it;
what still fails stays quarantined with its reason."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from derivlake.cli import main
from derivlake.config import ConfigError, DrainSettings, KafkaSettings, LakeSettings
from derivlake.ingest.drain import drain_topic
from derivlake.ingest.quarantine import quarantine_summary, replay_quarantine
from derivlake.lake.catalog import open_lake
from derivlake.normalize import normalizer_for
from tests.integration.drain_support import drain_env, lake_provenance, produce, ticker_payload

FAST = DrainSettings(idle_timeout_s=5, quarantine_max_ratio=1.0)
HYPE = {"extra_currencies": ("HYPE",)}
NEW_LISTING = "HYPE-27DEC24-30-C"


def seed(kafka: KafkaSettings, lake: LakeSettings) -> list[tuple[int, int]]:
    """40 tickers of a listed currency, 30 of one listed after this version, 5 malformed, interleaved;
    drained. Returns the Kafka positions of every well-formed message."""
    values = []
    for i in range(75):
        if i % 15 == 14:
            values.append(b'{"instrument_name": "BTC-27DEC24-100000-C", "timest')
        elif i % 5 in (1, 3):
            values.append(json.dumps(ticker_payload(i, NEW_LISTING)).encode())
        else:
            values.append(json.dumps(ticker_payload(i)).encode())
    produce(kafka, "deribit.ticker", values)
    result = drain_topic(kafka, lake, "deribit.ticker", FAST)
    assert (result.messages, result.quarantined) == (75, 35)
    assert result.quarantine_reasons == {"unknown_instrument": 30, "malformed_json": 5}
    con = open_lake(lake, read_only=True)
    try:
        return sorted(
            con.execute("SELECT kafka_partition, kafka_offset FROM market.options_ticker").fetchall()
            + con.execute(
                "SELECT partition, \"offset\" FROM ops.quarantine WHERE error LIKE 'unknown_instrument:%'"
            ).fetchall()
        )
    finally:
        con.close()


def quarantined(lake: LakeSettings) -> list[tuple[int, int, str]]:
    con = open_lake(lake, read_only=True)
    try:
        return con.execute('SELECT partition, "offset", error FROM ops.quarantine ORDER BY ALL').fetchall()
    finally:
        con.close()


def assert_exactly_once(lake: LakeSettings, good: list[tuple[int, int]]) -> None:
    """Every well-formed message once in the table, the malformed ones (only) in quarantine."""
    assert lake_provenance(lake) == good
    left = quarantined(lake)
    assert [e for _, _, e in left] == ["malformed_json"] * 5
    assert not {(p, o) for p, o, _ in left} & set(good)


def test_a_new_currency_is_replayed_into_its_table_once(
    kafka: KafkaSettings, lake_settings: LakeSettings
) -> None:
    good = seed(kafka, lake_settings)
    before = quarantined(lake_settings)

    unchanged = replay_quarantine(kafka, lake_settings, "deribit.ticker", FAST)
    assert (unchanged.examined, unchanged.released, unchanged.still_quarantined) == (35, 0, 35)
    assert quarantined(lake_settings) == before

    dry = replay_quarantine(kafka, lake_settings, "deribit.ticker", DrainSettings(**HYPE), dry_run=True)
    assert (dry.examined, dry.released, dry.still_quarantined) == (35, 30, 5)
    assert quarantined(lake_settings) == before and "would be released" in dry.summary()

    settings = DrainSettings(batch_messages=4, **HYPE)  # 9 chunks, each its own transaction
    done = replay_quarantine(kafka, lake_settings, "deribit.ticker", settings)
    assert (done.examined, done.released, done.still_quarantined) == (35, 30, 5)
    assert done.rows == {"market.options_ticker": 30, "market.derivative_ticker": 0}
    assert done.duplicates == 0
    assert_exactly_once(lake_settings, good)
    con = open_lake(lake_settings, read_only=True)
    assert con.execute(
        "SELECT sum(examined), sum(released), sum(rows), sum(still_quarantined) FROM ops.quarantine_replays"
    ).fetchone() == (35 + 35, 30, 30, 35 + 5)  # the first replay (nothing released), then this one
    row = con.execute(
        f"SELECT mark_iv, open_interest FROM market.options_ticker WHERE symbol = '{NEW_LISTING}' "
        "ORDER BY open_interest LIMIT 1"
    ).fetchone()
    assert row == (52.5, 1.0)  # the message's own values, from its raw bytes
    con.close()

    again = replay_quarantine(kafka, lake_settings, "deribit.ticker", settings)
    assert (again.examined, again.released) == (5, 0)
    assert_exactly_once(lake_settings, good)


def test_a_replayed_upstream_duplicate_is_dropped_and_counted(
    kafka: KafkaSettings, lake_settings: LakeSettings
) -> None:
    trade = {
        "trade_id": "H-1", "instrument_name": "HYPE-PERPETUAL", "timestamp": 1_735_000_000_000,
        "direction": "buy", "price": 30.0, "amount": 10.0,
    }  # fmt: skip
    sent = [trade, trade, {**trade, "trade_id": "H-2"}]  # a re-send after a reconnect
    produce(kafka, "deribit.trades", [json.dumps(t).encode() for t in sent], [b"HYPE-PERPETUAL"] * 3)
    assert drain_topic(kafka, lake_settings, "deribit.trades", FAST).quarantined == 3
    done = replay_quarantine(kafka, lake_settings, "deribit.trades", DrainSettings(**HYPE))
    assert (done.released, done.rows["market.trades"], done.duplicates) == (3, 2, 1)
    con = open_lake(lake_settings, read_only=True)
    assert con.execute("SELECT id FROM market.trades ORDER BY id").fetchall() == [("H-1",), ("H-2",)]
    assert con.execute("SELECT count(*) FROM ops.quarantine").fetchone() == (0,)


def test_two_replays_at_once_release_each_message_once(
    kafka: KafkaSettings, lake_settings: LakeSettings
) -> None:
    good = seed(kafka, lake_settings)
    settings = DrainSettings(batch_messages=3, **HYPE)
    start = threading.Barrier(2)
    results, errors = [], []

    def replay() -> None:
        start.wait()
        try:
            results.append(replay_quarantine(kafka, lake_settings, "deribit.ticker", settings))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert sum(r.released for r in results) == 30
    assert_exactly_once(lake_settings, good)


def test_a_replay_killed_anywhere_loses_and_doubles_nothing(
    kafka: KafkaSettings, lake_settings: LakeSettings
) -> None:
    good = seed(kafka, lake_settings)
    env = drain_env(
        kafka, lake_settings, DERIVLAKE_EXTRA_CURRENCIES="HYPE", DERIVLAKE_DRAIN_BATCH_MESSAGES="1"
    )
    command = [sys.executable, "-m", "derivlake", "quarantine", "replay", "--topic", "deribit.ticker"]
    rnd = random.Random(7)
    for _ in range(4):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        committed = len(lake_provenance(lake_settings))
        deadline = time.monotonic() + 60
        while len(lake_provenance(lake_settings)) == committed and proc.poll() is None:  # under way
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(rnd.uniform(0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        released = lake_provenance(lake_settings)
        assert len(released) == len(set(released)) and set(released) <= set(good)
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "still quarantined" in finished.stdout
    assert_exactly_once(lake_settings, good)


def test_extra_currencies_are_validated_and_reach_the_grammar() -> None:
    import re

    ticker = normalizer_for("deribit.ticker", ("HYPE",))
    assert re.fullmatch(ticker.symbol_pattern, NEW_LISTING)
    assert not re.fullmatch(normalizer_for("deribit.ticker").symbol_pattern, NEW_LISTING)
    assert re.fullmatch(normalizer_for("deribit.index", ("HYPE",)).symbol_pattern, "hype_usdc")
    with pytest.raises(ConfigError, match="DERIVLAKE_EXTRA_CURRENCIES: 'hype' is not a currency code"):
        DrainSettings(extra_currencies=("hype",))


def test_list_counts_the_quarantine_by_reason_and_by_new_currency(
    kafka: KafkaSettings, lake_settings: LakeSettings, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    seed(kafka, lake_settings)
    for name, value in drain_env(kafka, lake_settings).items():
        monkeypatch.setenv(name, value)
    assert main(["quarantine", "list", "--topic", "deribit.ticker"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["topic", "reason", "messages", "first_at", "last_at", "example"]
    counts = {line.split()[1]: int(line.split()[2]) for line in lines[2:-1]}
    assert counts == {"unknown_instrument:HYPE": 30, "malformed_json": 5}
    assert lines[-1] == "(2 rows)"


def test_list_groups_malformed_names_by_currency(
    kafka: KafkaSettings, lake_settings: LakeSettings, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A row per malformed name made the list as long as a renamed feed's series list."""
    names = ["BTC-32JAN25-1000-C", "BTC-FOO", "btc-perpetual", "BTC-FOO", "ETH-1000-C"]
    produce(kafka, "deribit.ticker", [json.dumps(ticker_payload(i, n)).encode() for i, n in enumerate(names)])
    assert drain_topic(kafka, lake_settings, "deribit.ticker", FAST).quarantined == 5
    _, rows = quarantine_summary(kafka, lake_settings, ["deribit.ticker"])
    assert [row[1:3] for row in rows] == [
        ("malformed_instrument:BTC-32JAN25-1000-C (and 2 more names)", 4),
        ("malformed_instrument:ETH-1000-C", 1),
    ]
    for name, value in drain_env(kafka, lake_settings).items():
        monkeypatch.setenv(name, value)
    assert main(["quarantine", "list", "--topic", "deribit.ticker"]) == 0
    out = capsys.readouterr().out
    assert "BTC-32JAN25-1000-C (and 2 more names)" in out and out.endswith("(2 rows)\n"), out


def test_the_currencies_a_drain_would_quarantine_are_named() -> None:
    from derivlake.normalize.spec import unknown_currencies

    assert unknown_currencies(("BTC", "HYPE", "sui")) == ["HYPE", "sui"]
    assert unknown_currencies(("BTC", "HYPE", "sui"), ("HYPE", "SUI")) == []
