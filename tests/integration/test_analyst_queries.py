"""The README's five analyst questions, run as documented on simulated data drained into a real lake,
checked against answers computed independently from the simulator's own messages."""

from __future__ import annotations

import json
import math
import statistics
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


def _interpolated(points: list[tuple[float, float]], at: float) -> float | None:
    """Linear between the two points around `at` (x, y), None outside them: a plain loop, not the SQL's way."""
    below = [p for p in points if p[0] <= at]
    above = [p for p in points if p[0] >= at]
    if not below or not above:
        return None
    (x0, y0), (x1, y1) = max(below), min(above)
    return y0 if x1 == x0 else y0 + (y1 - y0) * (at - x0) / (x1 - x0)


def test_atm_term_structure_at_0800(lake: LakeSettings, tickers: list[dict]) -> None:
    """Per underlying and expiry, the IV at the forward: linear in ln(K/F) between the strikes around it, a
    strike's call and put averaged, as the chain's atm_iv (the nearest strike's IV alone was off it)."""
    at = _ms(AT)
    smiles: dict[tuple[str, date], dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    forwards: dict[tuple[str, date], list[float]] = defaultdict(list)
    for name, t in _last_option_quotes(tickers, at, inclusive=True).items():
        underlying, expiry, strike = _series(name)
        if expiry.timestamp() * 1000 <= at:
            continue
        smiles[underlying, expiry.date()][math.log(strike / t["underlying_price"])].append(t["mark_iv"])
        forwards[underlying, expiry.date()].append(t["underlying_price"])
    expected = {}
    for key, smile in smiles.items():
        points = sorted((k, sum(ivs) / len(ivs)) for k, ivs in smile.items())
        iv = _interpolated(points, 0.0)
        expected[key] = iv if iv is not None else min(points, key=lambda p: abs(p[0]))[1]
    rows = run(lake, "atm_term_structure", day="2025-03-06")
    assert {"BTC", "ETH"} <= {r[0] for r in rows}
    assert [(r[0], r[1]) for r in rows] == sorted(expected)
    off_strike = 0
    for underlying, expiry, days, forward, iv in rows:
        hours = (
            datetime(expiry.year, expiry.month, expiry.day, 8, tzinfo=UTC).timestamp() * 1000 - at
        ) / 3.6e6
        assert days == round(hours / 24, 2)
        assert forward == pytest.approx(statistics.median(forwards[underlying, expiry]), rel=1e-12)
        assert iv == pytest.approx(expected[underlying, expiry], abs=0.005 + 1e-9), (underlying, expiry)
        smile = smiles[underlying, expiry]
        nearest = min(smile, key=abs)
        off_strike += round(smile[nearest][0], 2) != iv
    assert off_strike, "the forward falls between strikes: the IV there is not a listed strike's"


def test_25_delta_risk_reversal(lake: LakeSettings, tickers: list[dict]) -> None:
    """The 08:00 call IV at delta +0.25 minus the put IV at -0.25, each linear in delta between the options
    around it, computed here; an expiry whose options do not reach past 0.25 on both sides has no row (the
    option nearest 0.25 could be a 40-delta call)."""
    snapshot = _ms(AT)
    points: dict[tuple[str, date, str], list[tuple[float, float]]] = defaultdict(list)  # -> (delta, iv)
    for name, t in _last_option_quotes(tickers, snapshot, inclusive=True).items():
        underlying, expiry, _ = _series(name)
        if expiry.timestamp() * 1000 <= snapshot:
            continue
        side = "call" if name.endswith("-C") else "put"
        points[underlying, expiry.date(), side].append((t["greeks"]["delta"], t["mark_iv"]))
    expected, unreached = {}, set()
    for u, e, side in points:
        if side != "call":
            continue
        call = _interpolated(points[u, e, "call"], 0.25)
        put = _interpolated(points.get((u, e, "put"), []), -0.25)
        if call is None or put is None:
            unreached.add((u, e))
        else:
            expected[u, e] = (call, put)
    assert expected and unreached, "expiries with and without 25-delta options both"
    rows = run(lake, "risk_reversal_25d")
    assert {r[0].isoformat() for r in rows} == {"2025-03-06"}
    assert [(r[1], r[2]) for r in rows] == sorted(expected)
    for _day, underlying, expiry, call_iv, put_iv, rr in rows:
        call, put = expected[underlying, expiry]
        assert (call_iv, put_iv) == pytest.approx((call, put), abs=0.005 + 1e-9), (underlying, expiry)
        assert rr == pytest.approx(call - put, abs=0.005 + 1e-9), (underlying, expiry)
    assert any(rr != 0 for *_, rr in rows), "a smile with skew"


def test_most_traded_options_match_the_feed(lake: LakeSettings, feed: list) -> None:
    """Ranked by USD notional (amount in coin x index): by contracts, a SOL option's 150 USD counted as a BTC
    option's 90,000. The premium: an inverse option's price is in coin (x the index), a linear one's in USDC
    already, as the instrument's quote currency in the feed says."""
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
    notional: dict[str, float] = defaultdict(float)
    premium: dict[str, float] = defaultdict(float)
    for trade in trades:
        name = trade["instrument_name"]
        to_usd = 1.0 if quoted_in[name] == "USDC" else trade["index_price"]
        contracts[name] += trade["amount"]
        count[name] += 1
        notional[name] += trade["amount"] * trade["index_price"]
        premium[name] += trade["amount"] * trade["price"] * to_usd
    expected = sorted(notional, key=lambda s: (-notional[s], s))[:10]
    by_contracts = sorted(contracts, key=lambda s: (-round(contracts[s], 2), s))[:10]
    assert expected != by_contracts, "the two rankings differ on this feed"
    assert any(quoted_in[s] == "USDC" for s in contracts), "linear options traded"
    rows = run(lake, "most_traded_options")
    assert [(r[0], r[1], r[2]) for r in rows] == [(s, count[s], round(contracts[s], 2)) for s in expected]
    for r in rows:  # rounded to whole dollars: at most half a dollar off, summed in another order
        assert r[3] == pytest.approx(notional[r[0]], abs=0.5 + 1e-9 * notional[r[0]]), r
        assert r[4] == pytest.approx(premium[r[0]], abs=0.5 + 1e-9 * premium[r[0]]), r


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
    # the time is UTC unless it says otherwise: 09:00 at +01:00 is the same book (the offset was dropped)
    assert run(lake, "book_depth", symbol=symbol, ts="2025-03-06T09:00:00+01:00") == rows


def test_book_depth_from_a_snapshot_days_old(kafka: KafkaSettings, tmp_path: Path) -> None:
    """A live feed gets a snapshot only when it subscribes: three days later the book is that snapshot
    plus every change since (only the day of `ts` and the one before were read: no rows)."""
    from tests.integration.drain_support import produce

    def book(kind: str, day: int, hour: int, change_id: int, bids: list, asks: list) -> bytes:
        at = int(datetime(2025, 3, day, hour, tzinfo=UTC).timestamp() * 1000)
        return json.dumps({"type": kind, "timestamp": at, "instrument_name": "BTC-PERPETUAL",
                           "change_id": change_id, "prev_change_id": change_id - 1,
                           "bids": bids, "asks": asks}).encode()  # fmt: skip

    produce(kafka, "deribit.book", [
        book("snapshot", 1, 10, 1, [["new", 100.0, 5.0], ["new", 99.5, 3.0]],
             [["new", 100.5, 4.0], ["new", 101.0, 2.0]]),
        book("change", 3, 12, 2, [["change", 100.0, 7.0]], [["delete", 101.0, 0.0]]),
        book("change", 4, 9, 3, [], [["new", 100.6, 1.0]]),
        book("change", 4, 11, 4, [["delete", 99.5, 0.0]], []),  # after ts
    ])  # fmt: skip
    lake = LakeSettings(home=tmp_path / "home")
    assert drain_topic(kafka, lake, "deribit.book", DrainSettings(idle_timeout_s=5)).quarantined == 0
    rows = run(lake, "book_depth", symbol="BTC-PERPETUAL", ts="2025-03-04T10:00:00")
    assert rows == [("ask", 2, 5.0, 100.5, 100.6, 100.25), ("bid", 2, 10.0, 99.5, 100.0, 100.25)]


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
