"""Simulator invariants, in memory: grammar, calendar, smile, books, TWAP, faults, determinism."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime

import numpy as np
import pytest

from derivlake.feed.calendar import (
    ListingPolicy,
    format_strike,
    listed_expiries,
    option_name,
    parse_instrument,
    settlement_period,
)
from derivlake.feed.market import MARKETS, YEAR_S, smile_vol
from derivlake.feed.producer import ListSink
from derivlake.feed.simulator import (
    ACCOUNTS,
    BAD_KINDS,
    DAY_MS,
    OPENING_MS,
    REQUIRED_FIELDS,
    WRONG_TYPES,
    SimulatorConfig,
    iter_messages,
    simulate,
)
from derivlake.normalize.spec import KNOWN_CURRENCIES, MS_TIMESTAMP_MIN
from derivlake.pricing import implied_vol

# 06:00 -> 10:00 covers the 07:30-08:00 TWAP, the 08:00 expiry and the new listings
WINDOW = (datetime(2024, 12, 26, 6, tzinfo=UTC), datetime(2024, 12, 26, 10, tzinfo=UTC))


@pytest.fixture(scope="module")
def run() -> tuple[list, object]:
    sink = ListSink()
    stats = simulate(SimulatorConfig(seed=7, start=WINDOW[0], end=WINDOW[1]), sink)
    return sink.messages, stats


def values(messages: list, kind: str) -> list[dict]:
    return [json.loads(m.value) for m in messages if m.topic == kind]


def test_names_and_calendar_rules() -> None:
    assert option_name("BTC", datetime(2020, 6, 9, 8, tzinfo=UTC), 9875, False) == "BTC-9JUN20-9875-P"
    assert format_strike(8.6) == "8d6" and format_strike(100000.0) == "100000"
    assert parse_instrument("SOL_USDC-29MAY26-8d6-P").strike == 8.6
    for bad in ("XYZ-31DEC99-100-C", "BTC-FOO", "BTC-09JUN20-9875-P", "BTC-32JAN25-1000-C"):
        assert parse_instrument(bad) is None
    assert settlement_period(date(2024, 12, 27)) == "month"
    assert settlement_period(date(2024, 12, 20)) == "week"
    assert settlement_period(date(2024, 12, 23)) == "day"
    exp = listed_expiries(datetime(2024, 12, 26, 7, 59, tzinfo=UTC), ListingPolicy(2, 1, 1, 2))
    assert exp[0] == datetime(2024, 12, 26, 8, tzinfo=UTC)
    assert datetime(2025, 3, 28, 8, tzinfo=UTC) in exp  # 27DEC24 is the first quarterly, March the second


def test_instruments_follow_grammar_and_come_first(run) -> None:
    messages, _ = run
    listed: dict[str, dict] = {}
    for m in messages:
        v = json.loads(m.value)
        if m.topic == "deribit.instruments":
            listed.setdefault(v["instrument_name"], v)
            continue
        name = v.get("instrument_name")
        if name is not None:
            assert name in listed, f"{name} ({m.topic}) before its instruments message"
    for name, spec in listed.items():
        parsed = parse_instrument(name)
        assert parsed is not None, name
        if parsed.kind == "perpetual":
            continue
        exp = datetime.fromtimestamp(spec["expiration_timestamp"] / 1000, UTC)
        assert (exp.hour, exp.minute, exp.second) == (8, 0, 0) and parsed.expiry == exp
        assert spec["settlement_period"] == settlement_period(exp.date())
    assert any("d" in n.split("-")[2] for n in listed if n.startswith("SOL_USDC") and n.count("-") == 3)


def test_expired_series_stop_ticking_and_new_ones_are_listed(run) -> None:
    messages, _ = run
    expiry_ms = int(datetime(2024, 12, 26, 8, tzinfo=UTC).timestamp() * 1000)
    tickers = values(messages, "deribit.ticker")
    expiring = {t["instrument_name"] for t in tickers if "-26DEC24-" in t["instrument_name"]}
    assert expiring
    assert not [t for t in tickers if t["instrument_name"] in expiring and t["timestamp"] >= expiry_ms]
    new = [v for v in values(messages, "deribit.instruments") if v["creation_timestamp"] == expiry_ms]
    assert new and all(v["expiration_timestamp"] > expiry_ms for v in new)


def test_marks_reprice_to_the_smile(run) -> None:
    messages, _ = run
    specs = {m.market: m for m in MARKETS}
    rows = []
    for t in values(messages, "deribit.ticker"):
        p = parse_instrument(t["instrument_name"])
        if p is None or p.kind != "option" or t["greeks"]["vega"] < 1e-5 * t["underlying_price"]:
            continue
        T = (p.expiry.timestamp() * 1000 - t["timestamp"]) / 1000 / YEAR_S
        F = t["underlying_price"]
        usd = t["mark_price"] * (1.0 if p.linear else F)
        want = float(smile_vol(specs[t["instrument_name"].rsplit("-", 3)[0]], np.log(p.strike / F), T))
        rows.append((usd, F, p.strike, T, p.option_type == "call", want, t["mark_iv"]))
    usd, F, K, T, call, want, mark_iv = (np.array(c) for c in zip(*rows, strict=True))
    res = implied_vol(usd, F, K, T, call)
    ok = np.isfinite(res.iv)
    assert ok.sum() > 1000
    assert np.max(np.abs(res.iv[ok] - want[ok])) < 2e-3
    assert np.max(np.abs(mark_iv - want * 100)) < 0.01  # mark_iv is rounded to 2 dp, F to the index precision


def test_books_rebuild_to_the_next_snapshot_and_never_cross(run) -> None:
    messages, _ = run
    books: dict[str, tuple[dict, dict]] = {}
    last: dict[str, int] = {}
    checked = 0
    for v in values(messages, "deribit.book"):
        name = v["instrument_name"]
        if v["type"] == "snapshot":
            bids = {p: a for _, p, a in v["bids"]}
            asks = {p: a for _, p, a in v["asks"]}
            if name in books and last[name] == v["change_id"]:
                assert books[name] == (bids, asks)
                checked += 1
            books[name] = (bids, asks)
        else:
            assert v["prev_change_id"] == last[name]
            for side, levels in zip(books[name], (v["bids"], v["asks"]), strict=True):
                for action, p, a in levels:
                    if action == "delete":
                        del side[p]
                    else:
                        side[p] = a
        last[name] = v["change_id"]
        bids, asks = books[name]
        if bids and asks:
            assert max(bids) < min(asks)
    assert checked > 100
    for t in values(messages, "deribit.ticker"):
        if t["best_bid_price"] and t["best_ask_price"]:
            assert t["best_bid_price"] < t["best_ask_price"]


def test_estimated_delivery_price_is_the_index_twap(run) -> None:
    messages, stats = run
    start = int(datetime(2024, 12, 26, 7, 30, tzinfo=UTC).timestamp() * 1000)
    expiry = start + 30 * 60_000
    index = [v for v in values(messages, "deribit.index") if v["index_name"] == "btc_usd"]
    twap = np.mean([v["price"] for v in index if start <= v["timestamp"] < expiry])
    assert stats.delivery_prices[("btc_usd", expiry)] == pytest.approx(twap, abs=0.006)
    last = [
        t
        for t in values(messages, "deribit.ticker")
        if t["instrument_name"].startswith("BTC-26DEC24-") and start <= t["timestamp"] < expiry
    ]
    assert last
    for t in last:
        running = np.mean([v["price"] for v in index if start <= v["timestamp"] <= t["timestamp"]])
        assert t["estimated_delivery_price"] == pytest.approx(running, abs=0.006)


def test_estimated_delivery_price_is_the_index_outside_the_expiry_window(run) -> None:
    """From 08:00 to the next 07:30 a series expiring the next morning estimates the index, not the TWAP
    of the window that just closed (which `twap` still holds until the next 07:30)."""
    messages, _ = run
    expiry = {
        v["instrument_name"]: v["expiration_timestamp"] for v in values(messages, "deribit.instruments")
    }
    window_ms = 30 * 60_000
    outside = [
        t
        for t in values(messages, "deribit.ticker")
        if "estimated_delivery_price" in t
        and not expiry[t["instrument_name"]] - window_ms <= t["timestamp"] < expiry[t["instrument_name"]]
    ]
    after_expiry = datetime(2024, 12, 26, 8, tzinfo=UTC).timestamp() * 1000
    assert [t for t in outside if "-27DEC24-" in t["instrument_name"] and t["timestamp"] >= after_expiry]
    stale = [t for t in outside if t["estimated_delivery_price"] != t["index_price"]]
    assert not stale, f"{len(stale)} tickers, e.g. {stale[0]}"


def test_deposits_first_and_fills_are_user_trades(run) -> None:
    messages, _ = run
    first_fill = next(i for i, m in enumerate(messages) if m.topic == "desk.fills")
    deposits = [i for i, m in enumerate(messages) if m.topic == "desk.transfers"]
    assert deposits[0] < first_fill
    opening = [json.loads(messages[i].value) for i in deposits[: sum(len(a.deposits) for a in ACCOUNTS)]]
    assert {(v["account_id"], v["currency"], v["amount"]) for v in opening} == {
        (a.account_id, c, amount) for a in ACCOUNTS for c, amount in a.deposits
    }
    assert {v["timestamp"] for v in opening} == {OPENING_MS}
    assert OPENING_MS >= MS_TIMESTAMP_MIN  # a time the lake takes (not out_of_range)
    trades = {v["trade_id"]: v for v in values(messages, "deribit.trades")}
    for m in messages:
        if m.topic == "desk.fills":
            v = json.loads(m.value)
            assert m.key == v["account_id"].encode() and v["trade_id"] in trades
            assert {"order_id", "liquidity", "fee", "fee_currency", "underlying_price"} <= v.keys()
    lo_us, hi_us = (int(t.timestamp()) * 1_000_000 for t in WINDOW)
    for m in messages:
        h = dict(m.headers)
        assert h["source"] == b"simulator" and h["channel"]
        assert lo_us <= int(h["received_at"]) < hi_us + 5_000, h  # µs, when the feed got it: in the run


def _ids(config: SimulatorConfig) -> dict[str, set[str]]:
    """Every id a run gives out, by kind; the opening deposits' transfer ids apart."""
    ids: dict[str, set[str]] = defaultdict(set)
    for m in iter_messages(config):
        v = json.loads(m.value)
        if m.kind == "deribit.trades":
            ids["trade"].add(v["trade_id"])
            ids["block"] |= {v["block_trade_id"]} if "block_trade_id" in v else set()
        elif m.kind == "desk.fills":
            ids["fill"].add((v["account_id"], v["trade_id"]))
            ids["order"].add(v["order_id"])
        elif m.kind == "desk.transfers":
            ids["opening" if v["timestamp"] == OPENING_MS else "transfer"].add(v["transfer_id"])
    return ids


def test_runs_over_other_windows_never_reuse_an_id_and_a_rerun_repeats_them() -> None:
    """Ids restarted with every run until 2026-12-03: a second run over a later window of the same day had
    its fills dropped by the drain as duplicates of the first run's. Consecutive, overlapping and other-seed
    runs each have ids of their own; the same run again has the same ones (its re-send is a duplicate)."""
    day = datetime(2024, 12, 26, tzinfo=UTC)
    at = lambda h, m: day.replace(hour=h, minute=m)  # noqa: E731
    run = lambda seed, start, end: SimulatorConfig(seed=seed, start=start, end=end, trade_rate=0.5)  # noqa: E731
    first = run(7, at(11, 50), at(12, 10))  # with the 12:00 transfers
    runs = {
        "first": first,
        "next": run(7, at(12, 10), at(12, 30)),
        "overlapping": run(7, at(11, 55), at(12, 5)),
        "longer": run(7, at(11, 50), at(12, 20)),
        "other seed": run(8, first.start, first.end),
    }
    ids = {name: _ids(config) for name, config in runs.items()}
    assert ids["first"] == _ids(first)
    for kind in ("trade", "fill", "order", "transfer"):
        assert all(ids[name][kind] for name in runs if kind != "transfer" or name != "next"), kind
        for a in runs:
            for b in runs:
                if a < b:
                    assert not ids[a][kind] & ids[b][kind], (kind, a, b)
    assert ids["first"]["block"] and ids["longer"]["block"]
    assert len({i for r in ids.values() for i in r["block"]}) == sum(len(r["block"]) for r in ids.values())
    # the opening deposits: one per account and currency, the same in every run
    opening = {f"tr-open-{a.account_id}-{c}" for a in ACCOUNTS for c, _ in a.deposits}
    assert all(r["opening"] == opening for r in ids.values())


def test_same_seed_same_bytes_and_other_seed_differs() -> None:
    cfg = SimulatorConfig(
        seed=3, start=datetime(2024, 3, 1, 7, tzinfo=UTC), end=datetime(2024, 3, 1, 8, 30, tzinfo=UTC)
    )
    a = [(m.kind, m.key, m.value, m.headers) for m in iter_messages(cfg)]
    b = [(m.kind, m.key, m.value, m.headers) for m in iter_messages(cfg)]
    assert a == b and len(a) > 1000
    other = SimulatorConfig(seed=4, start=cfg.start, end=cfg.end)
    assert [(m.key, m.value) for m in iter_messages(other)] != [(m[1], m[2]) for m in a]


def test_faults_are_counted_and_located() -> None:
    cfg = SimulatorConfig(
        seed=5,
        start=datetime(2024, 3, 1, 7, tzinfo=UTC),
        end=datetime(2024, 3, 1, 9, tzinfo=UTC),
        bad_rate=0.01,
        dup_rate=0.01,
        late_rate=0.01,
        gap_rate=0.01,
        trade_rate=1.0,
    )
    sink = ListSink()
    stats = simulate(cfg, sink)
    for kind in (*BAD_KINDS, "duplicate", "late", "gap"):
        assert stats.faults[kind] > 0, kind
    by_kind = defaultdict(int)
    for d in stats.faulty:
        m = sink.messages[d.offset]
        by_kind[d.mark] += 1
        if d.mark == "bad_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(m.value)
            continue
        v = json.loads(m.value)
        if d.mark == "missing_field":
            assert not set(REQUIRED_FIELDS[m.topic]) <= v.keys()
        elif d.mark in ("unknown_instrument", "malformed_instrument"):
            assert parse_instrument(v["instrument_name"]) is None
            known = v["instrument_name"].split("-")[0].split("_")[0] in KNOWN_CURRENCIES
            assert known == (d.mark == "malformed_instrument"), v["instrument_name"]
        elif d.mark == "late":
            ts = v["timestamp"]
            assert ts // DAY_MS < int(dict(m.headers)["received_at"]) // 1000 // DAY_MS
        elif d.mark == "duplicate":
            assert sink.messages[d.offset - 1].value == m.value
        elif d.mark == "wrong_type":
            assert any(v.get(name) == bad for name, bad in WRONG_TYPES[m.topic]), v
    assert dict(by_kind) == {k: v for k, v in stats.faults.items() if k != "gap"}
    # gaps: a change never sent, so the next change of that book names it as its previous one (a
    # snapshot taken after it carries its id: the book's state includes the lost change). The next
    # change may itself be faulted, so the check is that no change links over a gap.
    faulty = {d.offset for d in stats.faulty}
    changes = [
        json.loads(m.value)
        for i, m in enumerate(sink.messages)
        if m.topic == "deribit.book" and i not in faulty and b'"type":"change"' in m.value
    ]
    gaps = set(stats.gaps)
    assert gaps and not gaps & {(c["instrument_name"], c["change_id"]) for c in changes}
    lost_before = {(c["instrument_name"], c["prev_change_id"]) for c in changes}
    assert len(gaps & lost_before) > len(gaps) // 2  # most gaps are seen at once by the next change
    gap_ids = defaultdict(list)
    for name, change_id in gaps:
        gap_ids[name].append(change_id)
    bridged = [
        c
        for c in changes
        if any(c["prev_change_id"] < g < c["change_id"] for g in gap_ids[c["instrument_name"]])
    ]
    assert not bridged, bridged[:3]


def test_book_text_is_msgspec_encoding_of_the_same_levels() -> None:
    """The book messages are assembled from cached number texts; they must be the bytes msgspec writes for
    the same lists, whatever the grid (tick, lot), the window growth, or an amount off its lot grid."""
    import msgspec

    from derivlake.feed.simulator import _BookText, _round

    rng = np.random.default_rng(11)
    text = _BookText()
    steps = [(0.0005, 0.1), (0.5, 10.0), (0.01, 1.0), (0.05, 1.0)]
    grids = [(text.prices.grid(t), text.amounts.grid(lot)) for t, lot in steps]
    actions = ("delete", "new", "change")
    for centre in (20, 120_000, 3, 60_000, 500_000):  # later batches move the windows both ways
        n, slots = 40, 6
        which = rng.integers(0, len(steps), n)
        ticks = np.maximum(1, centre + rng.integers(-5000, 5000, (n, 2, slots)))
        codes = rng.integers(0, 3, (n, 2, slots))
        lots = np.array([steps[w][1] for w in which])[:, None, None]
        amounts = _round(rng.integers(1, 3000, (n, 2, slots)) * lots, 6)
        amounts[codes == 0] = 0.0
        amounts[0, 0, 0] = 0.123456789  # off the lot grid
        emit = rng.random((n, 2, slots)) < 0.6
        emit[1] = False  # a change with no levels at all
        heads = np.empty((n, 2), dtype=object)
        heads[:, 0] = b'{"type":"change","instrument_name":'
        heads[:, 1] = [msgspec.json.encode(f"X-{i}") for i in range(n)]
        tick_grid = np.array([grids[w][0] for w in which])
        lot_grid = np.array([grids[w][1] for w in which])
        got = text.encode(heads, ticks, tick_grid, codes, amounts, lot_grid, emit)
        for i in range(n):
            tick = steps[which[i]][0]
            sides = [
                [
                    (actions[codes[i, s, k]], round(int(ticks[i, s, k]) * tick, 8), float(amounts[i, s, k]))
                    for k in range(slots)
                    if emit[i, s, k]
                ]
                for s in (0, 1)
            ]
            expected = {"type": "change", "instrument_name": f"X-{i}", "bids": sides[0], "asks": sides[1]}
            assert got[i] == msgspec.json.encode(expected)
