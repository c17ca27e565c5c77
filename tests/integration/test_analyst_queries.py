"""The README's five analyst questions, run as documented on simulated data drained into a real lake,
checked against answers computed independently from the simulator's own messages."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from derivlake.config import DrainSettings, KafkaSettings, LakeSettings
from derivlake.feed.calendar import parse_instrument
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
# one worker builds the module's lake (30 s) for all of its tests (`make test` runs pytest-xdist); the
# session scope keeps it when that worker runs other modules' tests in between (a module fixture was
# built twice)
pytestmark = pytest.mark.xdist_group("analyst_lake")


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def feed() -> list:
    """The run's messages as the simulator made them, once (a pass takes ~7 s); the answers are rebuilt from them."""
    return list(iter_messages(CONFIG))


@pytest.fixture(scope="session")
def tickers(feed: list) -> list[dict]:
    """The feed's well-formed tickers, parsed once for the three answers built from them."""
    return [json.loads(m.value) for m in feed if m.kind == "deribit.ticker" and m.fault is None]


def run(lake: LakeSettings, name: str, **params) -> list[tuple]:
    con = open_lake(lake, read_only=True)
    try:
        return con.execute((ANALYST / f"{name}.sql").read_text(), params or None).fetchall()
    finally:
        con.close()


EIGHT_H_MS = 8 * 3600 * 1000


def _series(name: str) -> tuple[str, datetime, float]:
    """Underlying (as the SQL names it: the name's first part), expiry (08:00 UTC) and strike of an
    option, by the feed's own parser of Deribit names (the lake's SQL has its own)."""
    parsed = parse_instrument(name)
    return name.split("-", 1)[0], parsed.expiry, parsed.strike


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def _last_option_quotes(tickers: list[dict], before_ms: int, inclusive: bool) -> dict[str, dict]:
    """Each option's last ticker at (or before) `before_ms`, from the simulator's messages."""
    last: dict[str, dict] = {}
    for t in tickers:
        at = t["timestamp"]
        if (
            not t["instrument_name"].endswith(("-C", "-P"))
            or at > before_ms
            or (at == before_ms and not inclusive)
        ):
            continue
        if t["instrument_name"] not in last or at >= last[t["instrument_name"]]["timestamp"]:
            last[t["instrument_name"]] = t
    return last


def test_atm_term_structure_at_0800(lake: LakeSettings, tickers: list[dict]) -> None:
    """Per underlying and expiry, the IV of the strike nearest the forward (log distance), computed here."""
    at = _ms(AT)
    expected: dict[tuple[str, date], tuple[float, float, float]] = {}  # -> (log distance, strike, iv)
    for name, t in _last_option_quotes(tickers, at, inclusive=True).items():
        underlying, expiry, strike = _series(name)
        if expiry.timestamp() * 1000 <= at:
            continue
        key, dist = (underlying, expiry.date()), abs(math.log(strike / t["underlying_price"]))
        if key not in expected or dist < expected[key][0]:
            expected[key] = (dist, strike, t["mark_iv"])
    rows = run(lake, "atm_term_structure", day="2025-03-06")
    assert {"BTC", "ETH"} <= {r[0] for r in rows}
    assert [(r[0], r[1]) for r in rows] == sorted(expected)
    for underlying, expiry, days, strike, iv in rows:
        hours = (
            datetime(expiry.year, expiry.month, expiry.day, 8, tzinfo=UTC).timestamp() * 1000 - at
        ) / 3.6e6
        assert days == round(hours / 24, 2)
        # a call and a put share the strike; the simulator quotes both at one IV, so the pick is unambiguous
        assert (strike, iv) == (expected[underlying, expiry][1], round(expected[underlying, expiry][2], 2))


def test_25_delta_risk_reversal(lake: LakeSettings, tickers: list[dict]) -> None:
    """The 08:00 call IV nearest delta +0.25 minus the put IV nearest -0.25, computed here."""
    snapshot = _ms(AT)
    nearest: dict[tuple[str, date, str], tuple[float, float]] = {}  # -> (delta distance, iv)
    for name, t in _last_option_quotes(tickers, snapshot, inclusive=False).items():
        underlying, expiry, _ = _series(name)
        if expiry.timestamp() * 1000 <= snapshot:
            continue
        side, target = ("call", 0.25) if name.endswith("-C") else ("put", -0.25)
        key, dist = (underlying, expiry.date(), side), abs(t["greeks"]["delta"] - target)
        if key not in nearest or dist < nearest[key][0]:
            nearest[key] = (dist, t["mark_iv"])
    expected = {
        (u, e): nearest[u, e, "call"][1] - nearest[u, e, "put"][1]
        for u, e, side in nearest
        if side == "call" and (u, e, "put") in nearest
    }
    rows = run(lake, "risk_reversal_25d")
    assert {r[0].isoformat() for r in rows} == {"2025-03-06"}
    assert [(r[1], r[2]) for r in rows] == sorted(expected)
    for _day, underlying, expiry, rr in rows:
        assert rr == pytest.approx(expected[underlying, expiry], abs=0.005 + 1e-9), (underlying, expiry)
    assert any(rr != 0 for *_, rr in rows), "a smile with skew"


def test_most_traded_options_match_the_feed(lake: LakeSettings, feed: list) -> None:
    """USD notional: an inverse option's price is in coin (x the index), a linear one's in USDC already,
    as the instrument's quote currency in the feed says."""
    quoted_in: dict[str, str] = {}
    trades: list[dict] = []
    for msg in feed:
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


def test_book_depth_around_the_mid_matches_a_plain_rebuild(lake: LakeSettings, feed: list) -> None:
    books: dict[str, dict[tuple[str, float], float]] = {}
    cutoff = _ms(AT)
    for msg in feed:
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


def test_daily_funding_of_perpetuals(lake: LakeSettings, tickers: list[dict]) -> None:
    """The 8-hour rate in force at each settlement (the last quoted before it), summed per day, here;
    only settlements the data has reached: the feed ends at 09:00, so 16:00's has not happened."""
    last: dict[tuple[str, int], tuple[int, float]] = {}  # (perpetual, settlement ms) -> (quoted at, rate)
    newest: dict[str, int] = {}
    for t in tickers:
        if not t["instrument_name"].endswith("PERPETUAL"):
            continue
        newest[t["instrument_name"]] = max(newest.get(t["instrument_name"], 0), t["timestamp"])
        if t.get("funding_8h") is None:
            continue
        key = (t["instrument_name"], (t["timestamp"] // EIGHT_H_MS + 1) * EIGHT_H_MS)
        if key not in last or t["timestamp"] >= last[key][0]:
            last[key] = (t["timestamp"], t["funding_8h"])
    per_day: dict[tuple[date, str], list[float]] = defaultdict(list)
    for (symbol, settles), (_, rate) in last.items():
        if settles <= newest[symbol]:
            per_day[datetime.fromtimestamp(settles / 1000, UTC).date(), symbol].append(rate)
    # data 00:00-09:00: the 08:00 settlement only, once per perpetual
    assert {k: len(v) for k, v in per_day.items()} == {(date(2025, 3, 6), s): 1 for _, s in per_day}
    rows = run(lake, "daily_funding")
    assert "BTC-PERPETUAL" in {r[1] for r in rows}
    assert [(r[0], r[1], r[2]) for r in rows] == [(d, s, len(per_day[d, s])) for d, s in sorted(per_day)]
    for day, symbol, _, pct in rows:
        assert pct == pytest.approx(100 * sum(per_day[day, symbol]), abs=5e-6 + 1e-12), symbol
