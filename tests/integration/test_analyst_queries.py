"""The README's five analyst questions, run as documented on simulated data drained into a real lake,
checked against answers computed independently from the simulator's own messages."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from derivlake.config import DrainSettings, KafkaSettings, LakeSettings
from derivlake.feed.producer import KafkaSink
from derivlake.feed.simulator import SimulatorConfig, iter_messages, simulate
from derivlake.ingest.airflow_task import TABLE_ASSETS
from derivlake.ingest.drain import drain_topic
from derivlake.lake.catalog import open_lake

ANALYST = Path(__file__).resolve().parents[2] / "include" / "derivlake" / "lake" / "sql" / "analyst"
CONFIG = SimulatorConfig(
    seed=5, start=datetime(2025, 3, 6, 0, 0, tzinfo=UTC), end=datetime(2025, 3, 6, 9, 0, tzinfo=UTC)
)
AT = "2025-03-06 08:00:00"
# one worker builds the module's lake (30 s) for all of its tests (`make test` runs pytest-xdist)
pytestmark = pytest.mark.xdist_group("analyst_lake")


@pytest.fixture(scope="module")
def lake(session_kafka: KafkaSettings, tmp_path_factory) -> LakeSettings:
    from dataclasses import replace

    from derivlake.config import default_topics
    from derivlake.kafka_io import ensure_topics

    kafka = replace(session_kafka, topics=default_topics(3, "analyst."))
    ensure_topics(kafka)
    sink = KafkaSink(kafka)
    simulate(CONFIG, sink, kafka)
    sink.close()
    lake = LakeSettings(home=tmp_path_factory.mktemp("analyst"))
    for kind in TABLE_ASSETS:
        drain_topic(kafka, lake, kind, DrainSettings(idle_timeout_s=5))
    return lake


def run(lake: LakeSettings, name: str, **params) -> list[tuple]:
    con = open_lake(lake, read_only=True)
    try:
        return con.execute((ANALYST / f"{name}.sql").read_text(), params or None).fetchall()
    finally:
        con.close()


def test_atm_term_structure_at_0800(lake: LakeSettings) -> None:
    rows = run(lake, "atm_term_structure", day="2025-03-06")
    underlyings = {r[0] for r in rows}
    assert {"BTC", "ETH"} <= underlyings
    for underlying in underlyings:
        days = [r[2] for r in rows if r[0] == underlying]
        assert days == sorted(days) and days[0] > 0
    assert all(10 < r[4] < 300 for r in rows), rows


def test_25_delta_risk_reversal(lake: LakeSettings) -> None:
    rows = run(lake, "risk_reversal_25d")
    assert rows and all(abs(r[3]) < 40 for r in rows), rows
    assert {r[0].isoformat() for r in rows} == {"2025-03-06"}


def test_most_traded_options_match_the_feed(lake: LakeSettings) -> None:
    """USD notional: an inverse option's price is in coin (x the index), a linear one's in USDC already,
    as the instrument's quote currency in the feed says."""
    quoted_in: dict[str, str] = {}
    trades: list[dict] = []
    for msg in iter_messages(CONFIG):
        if msg.fault is not None:
            continue
        if msg.kind == "deribit.instruments":
            spec = json.loads(msg.value)
            quoted_in[spec["instrument_name"]] = spec["quote_currency"]
        elif msg.kind == "deribit.trades":
            trade = json.loads(msg.value)
            if trade["instrument_name"].endswith(("-C", "-P")):
                trades.append(trade)
    contracts: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    usd: dict[str, float] = defaultdict(float)
    for trade in trades:
        name = trade["instrument_name"]
        to_usd = 1.0 if quoted_in[name] == "USDC" else trade["index_price"]
        contracts[name] += trade["amount"]
        count[name] += 1
        usd[name] += trade["amount"] * trade["price"] * to_usd
    expected = sorted(contracts.items(), key=lambda kv: (-round(kv[1], 2), kv[0]))[:10]
    assert {quoted_in[s] == "USDC" for s, _ in expected} == {True, False}, "linear and inverse options both"
    rows = run(lake, "most_traded_options")
    assert [(r[0], r[1], r[2]) for r in rows] == [(s, count[s], round(a, 2)) for s, a in expected]
    for r in rows:  # rounded to whole dollars: at most half a dollar off, summed in another order
        assert r[3] == pytest.approx(usd[r[0]], abs=0.5 + 1e-9 * usd[r[0]]), r


def test_book_depth_around_the_mid_matches_a_plain_rebuild(lake: LakeSettings) -> None:
    books: dict[str, dict[tuple[str, float], float]] = {}
    cutoff = int(datetime(2025, 3, 6, 8, tzinfo=UTC).timestamp() * 1000)
    for msg in iter_messages(CONFIG):
        if msg.kind != "deribit.book" or msg.fault is not None:
            continue
        m = json.loads(msg.value)
        if m["timestamp"] > cutoff:
            continue
        if m["type"] == "snapshot":
            books[m["instrument_name"]] = {}
        book = books.setdefault(m["instrument_name"], {})
        for side, levels in (("bid", m["bids"]), ("ask", m["asks"])):
            for action, price, amount in levels:
                book[(side, price)] = 0.0 if action == "delete" else amount
    symbol = "BTC-PERPETUAL" if "BTC-PERPETUAL" in books else sorted(books)[0]
    live = {k: v for k, v in books[symbol].items() if v > 0}
    mid = (max(p for s, p in live if s == "bid") + min(p for s, p in live if s == "ask")) / 2
    near = {k: v for k, v in live.items() if abs(k[1] / mid - 1) <= 0.01}
    rows = run(lake, "book_depth", symbol=symbol, ts=AT)
    got = {r[0]: (r[1], r[2]) for r in rows}
    for side in ("ask", "bid"):
        levels = [v for (s, _p), v in near.items() if s == side]
        assert got[side] == (len(levels), round(sum(levels), 4)), side
    assert rows[0][5] == round(mid, 6)


def test_daily_funding_of_perpetuals(lake: LakeSettings) -> None:
    rows = run(lake, "daily_funding")
    perps = {r[1] for r in rows}
    assert "BTC-PERPETUAL" in perps
    assert all(1 <= r[2] <= 3 and abs(r[3]) < 1 for r in rows), rows
