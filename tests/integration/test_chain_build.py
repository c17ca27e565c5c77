"""The options chain of a small hand-made business day, checked against numbers computed here.

Business day D = 2024-03-08: window [2024-03-07 08:00, 2024-03-08 08:00) UTC. BTC expiries 8MAR24 (expires
at the snapshot), 15MAR24 and 29MAR24 with five strikes each, plus one linear SOL_USDC call expiring at the
snapshot. Expected values are computed with plain Python (math.erf Black formulas, explicit sums), never
with derivlake's own functions.
"""

from __future__ import annotations

import itertools
import math
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
from derivlake.reports.chain import build_chain, ensure_tables

D = date(2024, 3, 8)
SNAP = datetime(2024, 3, 8, 8)
DAY_START = datetime(2024, 3, 7, 8)
QUOTE_TS = datetime(2024, 3, 8, 7, 59, 50)
STRIKES = (55000.0, 60000.0, 65000.0, 70000.0, 75000.0)
EXPIRIES = {  # name part -> (expiry, forward)
    "8MAR24": (datetime(2024, 3, 8, 8), 65500.0),
    "15MAR24": (datetime(2024, 3, 15, 8), 66000.0),
    "29MAR24": (datetime(2024, 3, 29, 8), 67000.0),
}
INDEX = 65400.0
PREV_OI_SYMBOL = "BTC-15MAR24-65000-C"
MISMATCH_SYMBOL = "BTC-29MAR24-70000-P"
NO_BID_SYMBOL = "BTC-29MAR24-75000-C"
YEAR_S = 365 * 86400


def ncdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def npdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def bs(F: float, K: float, T: float, s: float, call: bool) -> dict[str, float]:
    """Plain-Python Black-76 (undiscounted) with Deribit's greek units (domain.md section 3)."""
    sd = s * math.sqrt(T)
    d1 = (math.log(F / K) + sd * sd / 2) / sd
    d2 = d1 - sd
    w = 1 if call else -1
    price = w * (F * ncdf(w * d1) - K * ncdf(w * d2))
    theta = -F * npdf(d1) * s / (2 * math.sqrt(T)) / 365
    return {
        "price": price,
        "delta": ncdf(d1) if call else ncdf(d1) - 1,
        "gamma": npdf(d1) / (F * sd),
        "vega": F * npdf(d1) * math.sqrt(T) / 100,
        "theta": max(theta, -(price - max(w * (F - K), 0.0))),  # capped at the time value
        "rho": w * K * T * ncdf(w * d2) / 100,
    }


def smile_iv(K: float, F: float) -> float:
    k = math.log(K / F)
    return 60 + 40 * k * k - 20 * k


def series() -> list[dict]:
    """The latest quote (07:59:50) of every BTC series, with exchange greeks = the model's."""
    out = []
    i = 0
    for name, (expiry, F) in EXPIRIES.items():
        for K in STRIKES:
            for cp in ("C", "P"):
                call = cp == "C"
                sym = f"BTC-{name}-{int(K)}-{cp}"
                iv = smile_iv(K, F)
                T = (expiry - QUOTE_TS).total_seconds() / YEAR_S
                m = bs(F, K, T, iv / 100, call)
                mark = m["price"] / F
                delta = m["delta"] + (0.2 if sym == MISMATCH_SYMBOL else 0.0)
                out.append(
                    {
                        "symbol": sym, "type": "call" if call else "put", "strike": K, "expiration": expiry,
                        "F": F, "iv": iv, "mark": mark, "oi": 10.0 + i,
                        "bid": 0.0 if sym == NO_BID_SYMBOL else mark * 0.95, "ask": mark * 1.05,
                        "bid_iv": 0.0 if sym == NO_BID_SYMBOL else iv - 2, "ask_iv": iv + 2,
                        "delta": delta, "gamma": m["gamma"], "vega": m["vega"], "theta": m["theta"],
                        "rho": m["rho"],
                    }
                )  # fmt: skip
                i += 1
    return out


def _ticker_sql(s: dict, ts: datetime, *, mark_scale: float = 1.0, offset: int = 0) -> str:
    def lit(v: object) -> str:
        if isinstance(v, datetime):
            return f"TIMESTAMP '{v:%Y-%m-%d %H:%M:%S}'"
        if isinstance(v, str):
            return f"'{v}'"
        return repr(float(v))

    vals = [
        lit("deribit"), lit(s["symbol"]), lit(ts), lit(ts + timedelta(milliseconds=5)), lit(s["type"]),
        lit(s["strike"]), lit(s["expiration"]), lit(s["oi"]), lit(s["mark"]), lit(s["bid"]), lit(1.0),
        lit(s["bid_iv"]), lit(s["ask"]), lit(1.0), lit(s["ask_iv"]), lit(s["mark"] * mark_scale),
        lit(s["iv"]), lit("SYN." + s["symbol"].rsplit("-", 2)[0]), lit(s["F"]), lit(s["delta"]),
        lit(s["gamma"]), lit(s["vega"]), lit(s["theta"]), lit(s["rho"]), lit(INDEX), lit(0.0),
        lit("open"), f"DATE '{ts.date()}'", lit("t.deribit.ticker"), "0", str(offset),
    ]  # fmt: skip
    return "(" + ", ".join(vals) + ")"


TICKER_COLS = (
    "exchange, symbol, timestamp, local_timestamp, type, strike_price, expiration, open_interest, last_price, "
    "bid_price, bid_amount, bid_iv, ask_price, ask_amount, ask_iv, mark_price, mark_iv, underlying_index, "
    "underlying_price, delta, gamma, vega, theta, rho, index_price, interest_rate, state, date, kafka_topic, "
    "kafka_partition, kafka_offset"
)

SOL = {
    "symbol": "SOL_USDC-8MAR24-140-C", "type": "call", "strike": 140.0, "expiration": SNAP, "F": 151.0,
    "iv": 80.0, "mark": 11.5, "oi": 500.0, "bid": 11.0, "ask": 12.0, "bid_iv": 78.0, "ask_iv": 82.0,
    "delta": 0.99, "gamma": 0.001, "vega": 0.001, "theta": -0.5, "rho": 0.0,
}  # fmt: skip

# (symbol, timestamp, price, amount, index_price, block_trade_id)
TRADES = [
    ("BTC-15MAR24-65000-C", datetime(2024, 3, 7, 7, 59), 0.07, 5.0, 66000.0, None),  # before the window
    ("BTC-15MAR24-65000-C", datetime(2024, 3, 7, 9), 0.05, 2.0, 66000.0, None),
    ("BTC-15MAR24-65000-C", datetime(2024, 3, 7, 15), 0.06, 1.0, 67000.0, "BLOCK-1"),
    ("BTC-15MAR24-65000-C", datetime(2024, 3, 8, 3), 0.045, 3.0, 65500.0, None),
    ("BTC-15MAR24-65000-C", datetime(2024, 3, 8, 8), 0.09, 7.0, 65500.0, None),  # at 08:00: next day
    ("BTC-15MAR24-60000-P", datetime(2024, 3, 7, 20), 0.01, 4.0, 66500.0, None),
    ("SOL_USDC-8MAR24-140-C", datetime(2024, 3, 7, 22), 12.0, 10.0, 150.0, None),
]
# (index, timestamp, price): the TWAP window is 07:30-08:00 of D
INDEX_TICKS = [
    ("btc_usd", datetime(2024, 3, 7, 10), 60000.0),
    ("btc_usd", datetime(2024, 3, 8, 7, 20), 64000.0),  # in force at 07:30
    ("btc_usd", datetime(2024, 3, 8, 7, 40), 65000.0),
    ("btc_usd", datetime(2024, 3, 8, 7, 45), 67000.0),
    ("btc_usd", datetime(2024, 3, 8, 8), 99999.0),  # at 08:00: excluded
    ("sol_usdc", datetime(2024, 3, 8, 7, 30), 150.0),
    ("sol_usdc", datetime(2024, 3, 8, 7, 50), 160.0),
]
TWAP_START = datetime(2024, 3, 8, 7, 30)
BTC_TWAP = (10 * 64000 + 5 * 65000 + 15 * 67000) / 30
SOL_TWAP = (20 * 150 + 10 * 160) / 30


def seed_day(con) -> None:
    """Write the hand-made day into the lake tables (and a previous report for one series)."""
    rows = []
    offset = 0
    for s in [*series(), SOL]:
        # an older quote in the window, the latest one, one after the snapshot, one before the window
        for ts, scale in (
            (datetime(2024, 3, 7, 12), 1.3),
            (QUOTE_TS, 1.0),
            (datetime(2024, 3, 8, 8, 0, 5), 1.7),
            (datetime(2024, 3, 7, 7, 0), 1.9),
        ):
            if s["expiration"] == SNAP and ts > SNAP:
                continue
            offset += 1
            rows.append(_ticker_sql(s, ts, mark_scale=scale, offset=offset))
    expired = {**series()[0], "symbol": "BTC-7MAR24-60000-C", "expiration": datetime(2024, 3, 7, 8)}
    rows.append(_ticker_sql(expired, datetime(2024, 3, 7, 7, 59), offset=offset + 1))
    con.execute(f"INSERT INTO market.options_ticker ({TICKER_COLS}) VALUES {', '.join(rows)}")
    for n, (sym, ts, price, amount, idx, block) in enumerate(TRADES):
        con.execute(
            "INSERT INTO market.trades (exchange, symbol, timestamp, local_timestamp, id, side, price, amount, "
            "trade_seq, index_price, block_trade_id, date) VALUES ('deribit', ?, ?, ?, ?, 'buy', ?, ?, ?, ?, ?, ?)",
            [sym, ts, ts, f"T{n}", price, amount, n, idx, block, ts.date()],
        )
    for name, ts, price in INDEX_TICKS:
        con.execute(
            "INSERT INTO market.index_prices (index_name, timestamp, local_timestamp, price, date) "
            "VALUES (?, ?, ?, ?, ?)",
            [name, ts, ts, price, ts.date()],
        )
    ensure_tables(con)
    con.execute(
        "INSERT INTO reports.options_chain (as_of_date, symbol, open_interest) VALUES (?, ?, 100.0)",
        [D - timedelta(days=1), PREV_OI_SYMBOL],
    )


@pytest.fixture
def seeded(lake_settings: LakeSettings) -> LakeSettings:
    con = open_lake(lake_settings)
    try:
        seed_day(con)
    finally:
        con.close()
    return lake_settings


def report_rows(settings: LakeSettings, table: str) -> list[dict]:
    con = open_lake(settings, read_only=True)
    try:
        cur = con.execute(f"SELECT * FROM reports.{table} WHERE as_of_date = ? ORDER BY ALL", [D])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def test_chain_matches_hand_computed_day(seeded: LakeSettings) -> None:
    result = build_chain(seeded, D)
    rows = {r["symbol"]: r for r in report_rows(seeded, "options_chain")}
    expected = {s["symbol"]: s for s in [*series(), SOL]}
    assert set(rows) == set(expected), "alive series only: no 7MAR24, nothing listed after 08:00"
    assert result.series == 31 and result.expiry_count == 4

    for sym, s in expected.items():
        r = rows[sym]
        assert r["quote_ts"] == QUOTE_TS
        assert r["mark_price"] == pytest.approx(s["mark"], rel=1e-12), "latest quote at or before 08:00"
        assert r["forward"] == s["F"] and r["index_price"] == INDEX
        assert r["basis"] == pytest.approx(s["F"] / INDEX - 1)
        assert r["log_moneyness"] == pytest.approx(math.log(s["strike"] / s["F"]))
        assert r["open_interest"] == s["oi"]
        if sym == PREV_OI_SYMBOL:
            assert r["open_interest_prev"] == 100.0 and r["open_interest_change"] == s["oi"] - 100.0
        else:
            assert r["open_interest_prev"] is None and r["open_interest_change"] is None
        if sym == NO_BID_SYMBOL or s["bid"] <= 0:  # 0 = no bid (also worthless expiring series)
            assert r["bid"] is None and r["mid"] is None
            assert (r["bid_iv"] is None) is (s["bid_iv"] == 0)
        else:
            assert r["mid"] == pytest.approx((s["bid"] + s["ask"]) / 2)
            assert r["spread"] == pytest.approx(s["ask"] - s["bid"])
        if sym.startswith("BTC") and s["expiration"] > SNAP:
            T = (s["expiration"] - QUOTE_TS).total_seconds() / YEAR_S
            m = bs(s["F"], s["strike"], T, s["iv"] / 100, s["type"] == "call")
            for g in ("delta", "gamma", "vega", "theta", "rho"):
                assert r[f"calc_{g}"] == pytest.approx(m[g], rel=1e-9, abs=1e-12), (sym, g)
            assert r["greeks_mismatch"] is (sym == MISMATCH_SYMBOL)
            assert r["coin_delta"] == pytest.approx(s["delta"] - s["mark"])
            assert r["mark_price_usd"] == pytest.approx(s["mark"] * s["F"])
            assert r["days_to_expiry"] == pytest.approx((s["expiration"] - SNAP).total_seconds() / 86400)
            assert not r["is_expiring"] and r["delivery_price"] is None and r["payoff"] is None

    c = rows["BTC-15MAR24-65000-C"]
    assert (c["open"], c["high"], c["low"], c["close"]) == (0.05, 0.06, 0.045, 0.045)
    assert c["volume"] == 6.0 and c["trade_count"] == 3
    assert c["vwap"] == pytest.approx((0.05 * 2 + 0.06 * 1 + 0.045 * 3) / 6)
    assert c["volume_usd"] == pytest.approx(2 * 0.05 * 66000 + 1 * 0.06 * 67000 + 3 * 0.045 * 65500)
    assert c["block_volume"] == 1.0 and c["block_trade_count"] == 1
    untraded = rows["BTC-29MAR24-60000-C"]
    assert untraded["volume"] == 0 and untraded["trade_count"] == 0 and untraded["open"] is None
    sol = rows["SOL_USDC-8MAR24-140-C"]
    assert sol["volume_usd"] == pytest.approx(120.0), "linear USDC prices are already in USD"
    assert sol["is_inverse"] is False and sol["coin_delta"] is None

    exp = {(r["underlying"], r["expiration"]): r for r in report_rows(seeded, "options_chain_expiry")}
    for name, (expiry, F) in EXPIRIES.items():
        e = exp[("BTC", expiry)]
        ser = [s for s in series() if s["expiration"] == expiry]
        call_oi = sum(s["oi"] for s in ser if s["type"] == "call")
        put_oi = sum(s["oi"] for s in ser if s["type"] == "put")
        assert e["series"] == 10 and e["total_open_interest"] == call_oi + put_oi
        assert e["put_call_oi_ratio"] == pytest.approx(put_oi / call_oi)
        pain = {
            k: sum(
                s["oi"] * (max(k - s["strike"], 0) if s["type"] == "call" else max(s["strike"] - k, 0))
                for s in ser
            )
            for k in STRIKES
        }
        assert e["max_pain_strike"] == min(pain, key=pain.get), name
        if expiry == SNAP:
            assert e["atm_iv"] is None and e["delivery_price"] == pytest.approx(BTC_TWAP)
            continue
        # ATM: linear in log-moneyness between the strikes bracketing F
        lo = max(k for k in STRIKES if k <= F)
        hi = min(k for k in STRIKES if k > F)
        xl, xh = math.log(lo / F), math.log(hi / F)
        atm = smile_iv(lo, F) + (0 - xl) / (xh - xl) * (smile_iv(hi, F) - smile_iv(lo, F))
        assert e["atm_iv"] == pytest.approx(atm)

        def iv_at(target: float, kind: str, ser=ser) -> float:
            pts = sorted((s["delta"], s["iv"]) for s in ser if s["type"] == kind)
            for (d0, v0), (d1, v1) in itertools.pairwise(pts):
                if d0 <= target <= d1:
                    return v0 + (target - d0) / (d1 - d0) * (v1 - v0)
            return math.nan

        c25, p25 = iv_at(0.25, "call"), iv_at(-0.25, "put")
        assert not math.isnan(c25) and not math.isnan(p25)
        assert e["rr_25d"] == pytest.approx(c25 - p25)
        assert e["bf_25d"] == pytest.approx((c25 + p25) / 2 - atm)
    assert exp[("BTC", EXPIRIES["15MAR24"][0])]["put_call_volume_ratio"] == pytest.approx(4 / 6)


def test_expiring_series_carry_twap_delivery_price_and_payoff(seeded: LakeSettings) -> None:
    build_chain(seeded, D)
    rows = {r["symbol"]: r for r in report_rows(seeded, "options_chain")}
    for K in STRIKES:
        call, put = rows[f"BTC-8MAR24-{int(K)}-C"], rows[f"BTC-8MAR24-{int(K)}-P"]
        for r in (call, put):
            assert r["is_expiring"] and r["delivery_index"] == "btc_usd"
            assert r["delivery_price"] == pytest.approx(BTC_TWAP)
        assert call["payoff"] == pytest.approx(max(BTC_TWAP - K, 0) / BTC_TWAP)  # coin
        assert put["payoff"] == pytest.approx(max(K - BTC_TWAP, 0) / BTC_TWAP)
    sol = rows["SOL_USDC-8MAR24-140-C"]
    assert sol["delivery_index"] == "sol_usdc"
    assert sol["delivery_price"] == pytest.approx(SOL_TWAP)
    assert sol["payoff"] == pytest.approx(SOL_TWAP - 140.0)  # USDC


def test_an_index_silent_over_0730_0800_gives_no_delivery_price(seeded: LakeSettings) -> None:
    """The feed stopped at 07:20: the tick in force at 07:30 is not the TWAP of a window the lake has no
    tick of (it was, carried over the whole window, until 2026-12-03)."""
    con = open_lake(seeded)
    try:
        con.execute(
            "DELETE FROM market.index_prices WHERE index_name = 'btc_usd' AND timestamp >= ?", [TWAP_START]
        )
    finally:
        con.close()
    build_chain(seeded, D)
    rows = {r["symbol"]: r for r in report_rows(seeded, "options_chain")}
    for K in STRIKES:
        for right in ("C", "P"):
            r = rows[f"BTC-8MAR24-{int(K)}-{right}"]
            assert r["is_expiring"] and r["delivery_price"] is None and r["payoff"] is None
    assert rows["SOL_USDC-8MAR24-140-C"]["delivery_price"] == pytest.approx(SOL_TWAP)  # its ticks are there


def test_a_chain_of_hours_old_quotes_says_so(seeded: LakeSettings, caplog: pytest.LogCaptureFixture) -> None:
    """A feed that stopped in the afternoon: the chain is built from the quotes the lake has, and its
    result, asset event and log say how old they are."""
    fresh = build_chain(seeded, D, write_files=False)
    assert fresh.stale_note() is None and fresh.summary()["newest_quote"] == QUOTE_TS.isoformat()
    con = open_lake(seeded)
    try:
        con.execute("DELETE FROM market.options_ticker WHERE timestamp > TIMESTAMP '2024-03-07 12:00:00'")
    finally:
        con.close()
    with caplog.at_level("WARNING", logger="derivlake.reports.chain"):
        stale = build_chain(seeded, D, write_files=False)
    note = (
        "the newest quote in the chain of 2024-03-08 is 2024-03-07 12:00:00, 20.0 h before the 08:00 snapshot"
    )
    assert stale.series == fresh.series and stale.summary()["warning"].startswith(note)
    assert any(r.getMessage().startswith(note) for r in caplog.records)


def test_rerun_is_identical(seeded: LakeSettings) -> None:
    first = build_chain(seeded, D)
    csv1 = first.csv_path.read_bytes()
    rows1 = report_rows(seeded, "options_chain"), report_rows(seeded, "options_chain_expiry")
    second = build_chain(seeded, D)
    assert second.csv_path == first.csv_path
    assert second.csv_path.read_bytes() == csv1
    assert (report_rows(seeded, "options_chain"), report_rows(seeded, "options_chain_expiry")) == rows1
    assert first.csv_path == Path(
        seeded.reports_dir / "chain" / "2024-03-08" / "options_chain_2024-03-08.csv"
    )
    header = csv1.decode().splitlines()[0].split(",")
    assert header[:6] == ["as_of_date", "snapshot_ts", "underlying", "base_currency", "is_inverse", "symbol"]
    assert len(csv1.decode().splitlines()) == 32


def test_a_full_disk_fails_naming_it_and_the_rerun_writes_the_files(
    seeded: LakeSettings, tmp_path: Path
) -> None:
    """The chain is stored in the lake before its files are written: a full reports disk fails the build
    naming the file, leaves no half-written one, and the rerun writes them."""
    from tests.conftest import tmpfs

    disk = tmp_path / "reports"
    disk.mkdir()
    expected = build_chain(seeded, D, reports_dir=tmp_path / "elsewhere")
    room = -(-expected.csv_path.stat().st_size // 4096) * 4096  # the CSV's pages, none for the HTML page
    with tmpfs(disk, str(room), "a full reports disk") as resize:
        with pytest.raises(OSError, match="No space left on device") as failed:
            build_chain(seeded, D, reports_dir=disk)
        assert str(disk) in str(failed.value), failed.value
        assert [p.name for p in disk.rglob("*") if p.is_file()] == [expected.csv_path.name], "no partial page"
        resize("16m")
        again = build_chain(seeded, D, reports_dir=disk)
        assert again.csv_path.read_bytes() == expected.csv_path.read_bytes()
        assert again.html_path.read_bytes() == expected.html_path.read_bytes()


def test_rerun_replaces_only_its_date(seeded: LakeSettings) -> None:
    build_chain(seeded, D)
    con = open_lake(seeded, read_only=True)
    try:
        n_prev = con.execute(
            "SELECT count(*) FROM reports.options_chain WHERE as_of_date = ?", [D - timedelta(days=1)]
        ).fetchone()[0]
    finally:
        con.close()
    assert n_prev == 1, "the previous day's report is untouched"


def test_the_chain_is_stored_through_a_catalog_locked_for_a_moment(seeded: LakeSettings) -> None:
    """The store's commit lost to a busy catalog and failed the build (and its ROLLBACK, after a failed
    COMMIT had ended the transaction, replaced the error with "no transaction is active"). It is
    retried now, as a drain's commit is."""
    import threading

    from tests.conftest import catalog_write_lock

    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with catalog_write_lock(seeded):
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(30)
    threading.Timer(2.0, release.set).start()
    try:
        result = build_chain(seeded, D, write_files=False)
    finally:
        release.set()
        holder.join()
    assert sum(r["as_of_date"] == D for r in report_rows(seeded, "options_chain")) == result.series > 0
