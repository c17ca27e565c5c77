"""The lake status (`derivlake.lake.status`, the CLI and the UI page's data) against a real broker and
lake: its counts are checked against what the test produced and what the lake holds."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from derivlake.config import DrainSettings, KafkaSettings
from derivlake.ingest.drain import drain_topic
from derivlake.lake.catalog import open_lake
from derivlake.lake.maintenance import MaintenanceConfig, maintain
from derivlake.lake.status import read_status, render_html
from tests.conftest import free_port
from tests.integration.drain_support import drain_env, produce, produce_tickers, ticker_payload

FAST = DrainSettings(idle_timeout_s=5)


def _bad_tickers() -> list[bytes]:
    unknown = json.dumps(ticker_payload(0, symbol="XYZ-27DEC24-100-C")).encode()
    malformed = [json.dumps(ticker_payload(0, symbol=s)).encode() for s in ("BTC-FOO", "BTC-32JAN25-1000-C")]
    return [b"{not json", b"[1, 2", b"\xff\xfe", unknown, unknown, *malformed]


def _live_files(lake, table: str = "options_ticker") -> tuple[int, int]:
    con = open_lake(lake, read_only=True)
    try:
        return con.execute(
            "SELECT count(*), sum(data_file_size_bytes) FROM ducklake_list_files('lake', ?, schema => 'market')",
            [table],
        ).fetchone()
    finally:
        con.close()


def test_status_counts_what_was_drained_quarantined_and_left_waiting(
    kafka: KafkaSettings, lake_settings
) -> None:
    produce_tickers(kafka, 0, 300)
    produce(kafka, "deribit.ticker", _bad_tickers())
    result = drain_topic(kafka, lake_settings, "deribit.ticker", FAST)
    assert (result.messages, result.quarantined) == (307, 7)
    produce_tickers(kafka, 300, 40)  # not drained: the lag
    unasked = read_status(lake_settings)
    assert unasked.lag_error == "not asked of the brokers" and {t.lag for t in unasked.topics} == {None}
    before = {s.table: s for s in unasked.tables}
    assert before["market.options_ticker"].files == _live_files(lake_settings)[0] >= 1
    assert (before["market.options_ticker"].rows, before["market.options_ticker"].measured_at) == (None, None)
    assert {
        "ops.ingest_runs",
        "ops.quarantine",
        "desk.fills",
    } <= before.keys()  # every table, measured or not
    maintain(lake_settings, MaintenanceConfig(file_grace=timedelta(0)))

    status = read_status(lake_settings, kafka)
    topic = kafka.topic("deribit.ticker").name
    # every configured topic: those never drained (empty here) too, with nothing waiting
    assert [t.topic for t in status.topics] == sorted(s.name for s in kafka.topics)
    others = [t for t in status.topics if t.topic != topic]
    assert all(t.last_commit is None and t.lag == 0 and not t.stale(status.generated_at) for t in others)
    (t,) = [t for t in status.topics if t.topic == topic]
    assert (t.partitions, sum(t.next_offsets.values())) == (3, 307)
    assert (t.messages_1h, t.messages_24h, t.rows_24h, t.quarantined_24h) == (307, 307, 300, 7)
    assert t.lag == 40, "the real log ends, not Tansu's listed ones (short by a batch)"
    assert status.lag_error is None
    assert not t.stale(status.generated_at)
    assert timedelta(0) <= status.generated_at - t.last_commit < timedelta(minutes=5)

    reasons = {(q.reason, q.messages) for q in status.quarantine}
    # an instrument's name is cut off: one row per reason, an unknown currency's or a malformed name's
    assert reasons == {("malformed_json", 3), ("unknown_instrument", 2), ("malformed_instrument", 2)}
    con = open_lake(lake_settings, read_only=True)
    try:
        for q in status.quarantine:  # each example is a message quarantined for that reason
            partition, offset = map(int, q.example.split(":"))
            (error,) = con.execute(
                'SELECT error FROM ops.quarantine WHERE topic = ? AND partition = ? AND "offset" = ?',
                [topic, partition, offset],
            ).fetchone()
            assert error.split(":")[0] == q.reason
        (rows,) = con.execute("SELECT count(*) FROM market.options_ticker").fetchone()
    finally:
        con.close()
    tables = {s.table: s for s in status.tables}
    ticker = tables["market.options_ticker"]
    assert ticker.rows == rows == 300 and ticker.partitions == 1
    assert (ticker.files, ticker.bytes) == _live_files(lake_settings)
    page = render_html(status)
    assert topic in page and "unknown_instrument" in page and "stale" not in page.split("<body>")[1]

    # two days on: nothing in the windows, and a topic with messages waiting and no commit is stale
    later = read_status(lake_settings, kafka, now=datetime.now(UTC) + timedelta(days=2))
    (t,) = [t for t in later.topics if t.topic == topic]
    assert (t.messages_24h, t.quarantined_24h, t.lag) == (0, 0, 40) and not later.quarantine
    assert t.stale(later.generated_at)
    assert 'class="stale"' in render_html(later)

    # brokers gone: the lake's part still reads, the lag is unknown and says why
    dead = replace(kafka, bootstrap_servers=f"127.0.0.1:{free_port()}")
    blind = read_status(lake_settings, dead, lag_timeout_s=1)
    (t,) = [t for t in blind.topics if t.topic == topic]
    assert t.lag is None and t.messages_24h == 307 and t.stale(blind.generated_at) is False
    assert blind.lag_error and dead.bootstrap_servers in blind.lag_error


def test_status_cli_prints_text_and_json_and_checks(kafka: KafkaSettings, lake_settings) -> None:
    produce_tickers(kafka, 0, 50)
    drain_topic(kafka, lake_settings, "deribit.ticker", FAST)
    env = drain_env(kafka, lake_settings)
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "derivlake", "status", *a],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run("--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    (t,) = [t for t in doc["topics"] if t["topic"] == kafka.topic("deribit.ticker").name]
    assert (t["messages_24h"], t["lag"]) == (50, 0)
    text = run()
    assert text.returncode == 0, text.stderr
    (row,) = [
        line for line in text.stdout.splitlines() if line.startswith(kafka.topic("deribit.ticker").name)
    ]
    assert row.split()[-1] == "ok" and " 50 " in row, text.stdout
    assert run("--check").returncode == 0
    # words where the README promises them, never NULL: a topic never drained, the lag not asked, the
    # tables not measured yet (maintenance has not run) or never (ops, reports)
    (never,) = [
        line for line in text.stdout.splitlines() if line.startswith(kafka.topic("deribit.trades").name)
    ]
    assert never.split()[1:4] == ["never", "-", "0"], never
    blind = run("--no-lag")
    assert blind.returncode == 0 and "NULL" not in blind.stdout + text.stdout, blind.stdout
    (row,) = [
        line for line in blind.stdout.splitlines() if line.startswith(kafka.topic("deribit.ticker").name)
    ]
    assert row.split()[5:7] == ["unknown", "50"], row
    section = blind.stdout.split("\ntables")[1].split("\n\n")[0].splitlines()[3:-1]  # the rows
    tables = {line.split()[0]: line.split() for line in section}
    assert tables["market.options_ticker"][3:] == ["-", "-", "-", "not", "yet"]
    assert tables["ops.ingest_runs"][3:] == ["-", "-", "-", "not", "measured"]
    assert '"measurable": false' in run("--format", "json", "--no-lag").stdout
    produce(kafka, "deribit.trades", [b"{}"] * 3)  # waiting in a topic no drain has committed from
    check = run("--check")
    assert check.returncode == 1 and f"stale: {kafka.topic('deribit.trades').name} " in check.stderr, (
        check.stderr
    )


def test_status_of_a_missing_lake_says_so(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[2] / "include"),
           "DERIVLAKE_HOME": str(tmp_path / "nowhere")}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "derivlake", "status", "--no-lag"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "no lake at" in out.stderr and "Traceback" not in out.stderr
