"""The margin report of a hand-made business day, checked against numbers computed here.

The day is test_chain_build's (D = 2024-03-08, its chain built for real), plus instruments, fills,
transfers and perpetual tickers written here. Expected equity and standard margin are plain-Python sums
of the domain.md formulas; the portfolio margin of a lone linear perpetual is analytic.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from derivlake.cli import main
from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
from derivlake.reports.chain import build_chain
from derivlake.reports.margin import ChainMissingError, build_margin
from tests.integration.test_chain_build import (
    BTC_TWAP,
    EXPIRIES,
    SNAP,
    SOL_TWAP,
    TWAP_START,
    D,
    report_rows,
    seed_day,
    series,
)

PERP_EXPIRY = datetime(3000, 1, 1, 8)
BTC_PERP_MARK, BTC_PERP_INDEX = 65000.0, 64950.0
SOL_PERP_MARK, SOL_PERP_INDEX = 151.0, 150.5
# BTC-7MAR24 expired the day before, no chain of that day was built: its delivery price is the index TWAP
# of 2024-03-07 07:30-08:00 (the 07:00 tick holds until 07:45)
PREV_INDEX_TICKS = [(datetime(2024, 3, 6, 12), 50000.0), (datetime(2024, 3, 7, 7), 61000.0),
                    (datetime(2024, 3, 7, 7, 45), 62000.0)]  # fmt: skip
PREV_DELIVERY = (15 * 61000.0 + 15 * 62000.0) / 30
# name -> (kind, base, settlement currency, inverse, option_type, strike, expiry, perpetual)
INSTRUMENTS = {
    "BTC-7MAR24-60000-C": ("option", "BTC", "BTC", True, "call", 60000.0, datetime(2024, 3, 7, 8), False),
    "BTC-8MAR24-60000-C": ("option", "BTC", "BTC", True, "call", 60000.0, SNAP, False),
    "BTC-15MAR24-55000-C": ("option", "BTC", "BTC", True, "call", 55000.0, EXPIRIES["15MAR24"][0], False),
    "BTC-15MAR24-65000-C": ("option", "BTC", "BTC", True, "call", 65000.0, EXPIRIES["15MAR24"][0], False),
    "BTC-29MAR24-60000-P": ("option", "BTC", "BTC", True, "put", 60000.0, EXPIRIES["29MAR24"][0], False),
    "BTC-PERPETUAL": ("future", "BTC", "BTC", True, None, None, PERP_EXPIRY, True),
    "SOL_USDC-8MAR24-140-C": ("option", "SOL", "USDC", False, "call", 140.0, SNAP, False),
    "SOL_USDC-PERPETUAL": ("future", "SOL", "USDC", False, None, None, PERP_EXPIRY, True),
}
# (account, instrument, timestamp, direction, amount, price, fee, fee currency)
FILLS = [
    ("acct-a", "BTC-7MAR24-60000-C", datetime(2024, 3, 6, 10), "buy", 1.0, 0.1, 0.0003, "BTC"),
    ("acct-a", "BTC-15MAR24-65000-C", datetime(2024, 3, 7, 9), "buy", 2.0, 0.05, 0.0006, "BTC"),
    ("acct-a", "BTC-29MAR24-60000-P", datetime(2024, 3, 7, 10), "sell", 3.0, 0.04, 0.0009, "BTC"),
    (
        "acct-a",
        "BTC-PERPETUAL",
        datetime(2024, 3, 7, 11),
        "buy",
        20000.0,
        64000.0,
        20000 * 0.0005 / 64000,
        "BTC",
    ),
    (
        "acct-a",
        "BTC-PERPETUAL",
        datetime(2024, 3, 7, 12),
        "sell",
        5000.0,
        66000.0,
        -5000 * 0.0001 / 66000,
        "BTC",
    ),
    ("acct-a", "BTC-8MAR24-60000-C", datetime(2024, 3, 7, 13), "buy", 1.0, 0.08, 0.0003, "BTC"),
    ("acct-a", "BTC-15MAR24-55000-C", datetime(2024, 3, 7, 14), "buy", 1.0, 0.2, 0.0003, "BTC"),
    ("acct-a", "BTC-15MAR24-55000-C", datetime(2024, 3, 7, 15), "sell", 1.0, 0.21, 0.0003, "BTC"),
    ("acct-a", "BTC-15MAR24-65000-C", SNAP, "buy", 1.0, 0.06, 0.0003, "BTC"),  # at 08:00: the next day's
    ("acct-b", "SOL_USDC-PERPETUAL", datetime(2024, 3, 7, 16), "sell", 100.0, 150.0, 0.0, "USDC"),
    ("acct-b", "SOL_USDC-8MAR24-140-C", datetime(2024, 3, 7, 17), "sell", 10.0, 12.0, 0.3, "USDC"),
    ("acct-c", "ETH-PERPETUAL", datetime(2024, 3, 7, 18), "buy", 1000.0, 3000.0, 0.0, "ETH"),  # no spec
]
FILL_INDEX = {"BTC": 65000.0, "SOL": 150.0, "ETH": 3000.0}  # the index at each fill; its forward 1% above
# as Deribit lists them: USD per contract of the inverse perpetual, coin per contract elsewhere
CONTRACT_SIZE = {"BTC-PERPETUAL": 10.0, "SOL_USDC-PERPETUAL": 0.1}
TRANSFERS = [
    ("acct-a", "BTC", 10.0, datetime(2024, 3, 6)),
    ("acct-a", "BTC", -1.0, datetime(2024, 3, 7, 20)),
    ("acct-a", "BTC", 100.0, SNAP),  # at 08:00: the next day's
    ("acct-b", "USDC", 100000.0, datetime(2024, 3, 6)),
    ("acct-c", "ETH", 5.0, datetime(2024, 3, 6)),
]


def mark(symbol: str) -> dict:
    return next(s for s in series() if s["symbol"] == symbol)


def seed_margin_day(con) -> None:
    seed_day(con)
    for name, (kind, base, cur, inverse, otype, strike, expiry, perpetual) in INSTRUMENTS.items():
        con.execute(
            "INSERT INTO market.instruments (exchange, instrument_name, kind, base_currency, quote_currency, "
            "settlement_currency, instrument_type, option_type, strike, expiration_ts, settlement_period, "
            "contract_size, valid_from, date) VALUES ('deribit', ?, ?, ?, 'USD', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [name, kind, base, cur, "reversed" if inverse else "linear", otype, strike, expiry,
             "perpetual" if perpetual else "day", CONTRACT_SIZE.get(name, 1.0), datetime(2024, 1, 1),
             date(2024, 1, 1)],
        )  # fmt: skip
    for n, (acct, inst, ts, side, amount, price, fee, fee_cur) in enumerate(FILLS):
        con.execute(
            "INSERT INTO desk.fills (account_id, trade_id, instrument_name, timestamp, direction, amount, price, "
            "fee, fee_currency, index_price, underlying_price, date) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                acct,
                f"F{n}",
                inst,
                ts,
                side,
                amount,
                price,
                fee,
                fee_cur,
                FILL_INDEX[inst[:3]],
                FILL_INDEX[inst[:3]] * 1.01,
                ts.date(),
            ],
        )
    for n, (acct, cur, amount, ts) in enumerate(TRANSFERS):
        con.execute(
            "INSERT INTO desk.transfers (account_id, transfer_id, currency, amount, timestamp, date) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [acct, f"TR{n}", cur, amount, ts, ts.date()],
        )
    for sym, ts, mark_price, index in (
        ("BTC-PERPETUAL", datetime(2024, 3, 8, 7), 64000.0, 64000.0),
        ("BTC-PERPETUAL", datetime(2024, 3, 8, 7, 59, 59), BTC_PERP_MARK, BTC_PERP_INDEX),
        ("BTC-PERPETUAL", datetime(2024, 3, 8, 8, 0, 1), 70000.0, 70000.0),  # after the snapshot
        ("SOL_USDC-PERPETUAL", datetime(2024, 3, 8, 7, 59, 30), SOL_PERP_MARK, SOL_PERP_INDEX),
    ):
        con.execute(
            "INSERT INTO market.derivative_ticker (exchange, symbol, timestamp, mark_price, index_price, date) "
            "VALUES ('deribit', ?, ?, ?, ?, ?)",
            [sym, ts, mark_price, index, ts.date()],
        )
    build_chain(con, D)
    for ts, price in PREV_INDEX_TICKS:
        con.execute(
            "INSERT INTO market.index_prices (index_name, timestamp, local_timestamp, price, date) "
            "VALUES ('btc_usd', ?, ?, ?, ?)",
            [ts, ts, price, ts.date()],
        )


@pytest.fixture
def seeded(lake_settings: LakeSettings) -> LakeSettings:
    con = open_lake(lake_settings)
    try:
        seed_margin_day(con)
    finally:
        con.close()
    return lake_settings


def expected_acct_a() -> dict[str, float]:
    """Equity and standard margin of acct-a's BTC, by hand (domain.md 4.1, 4.2)."""
    before = [f for f in FILLS if f[0] == "acct-a" and f[2] < SNAP]
    fees = sum(f[6] for f in before)
    cash = 0.0
    for _, inst, _, side, amount, price, _, _ in before:
        signed = amount if side == "buy" else -amount
        cash += signed / price if inst == "BTC-PERPETUAL" else -signed * price
    call, put = mark("BTC-15MAR24-65000-C"), mark("BTC-29MAR24-60000-P")
    perp_usd = 20000.0 - 5000.0
    value = (
        (PREV_DELIVERY - 60000) / PREV_DELIVERY  # BTC-7MAR24-60000-C settled
        + (BTC_TWAP - 60000) / BTC_TWAP  # BTC-8MAR24-60000-C settles at this snapshot
        + 2 * call["mark"]
        - 3 * put["mark"]
        - perp_usd / BTC_PERP_MARK
    )
    f_put, k_put = put["F"], put["strike"]
    otm = max(f_put - k_put, 0.0)
    put_mm = max(0.075, 0.075 * put["mark"]) + put["mark"]
    put_im = max(max(0.15 - otm / f_put, 0.10) + put["mark"], put_mm)
    size = perp_usd / BTC_PERP_MARK
    equity = 10.0 - 1.0 - fees + cash + value
    delta = 2 * call["delta"] * call["F"] - 3 * put["delta"] * put["F"] + size * BTC_PERP_MARK
    return {
        "equity": equity,
        "im": 3 * put_im + size * (0.02 + size * 0.00005),
        "mm": 3 * put_mm + size * (0.01 + size * 0.00005),
        "delta": delta,
        "vega": 2 * call["vega"] - 3 * put["vega"],
        "theta": 2 * call["theta"] - 3 * put["theta"],
    }


def test_margin_matches_hand_computed_day(seeded: LakeSettings) -> None:
    result = build_margin(seeded, D)
    accounts = {
        (r["account_id"], r["currency"], r["model"]): r for r in report_rows(seeded, "margin_accounts")
    }
    assert set(accounts) == {
        (a, c, m) for a, c in (("acct-a", "BTC"), ("acct-b", "USDC"), ("acct-c", "ETH"))
        for m in ("standard", "portfolio", "span")
    }  # fmt: skip
    exp = expected_acct_a()
    std, pm = accounts[("acct-a", "BTC", "standard")], accounts[("acct-a", "BTC", "portfolio")]
    span = accounts[("acct-a", "BTC", "span")]
    for row in (std, pm, span):
        assert row["as_of"] == SNAP
        assert row["equity"] == pytest.approx(exp["equity"], rel=1e-12)
        assert row["positions"] == 3 and row["unpriced_positions"] == 0
        assert row["delta_total"] == pytest.approx(exp["delta"], rel=1e-9)
        assert row["vega_total"] == pytest.approx(exp["vega"], rel=1e-9)
        assert row["theta_total"] == pytest.approx(exp["theta"], rel=1e-9)
    assert std["initial_margin"] == pytest.approx(exp["im"], rel=1e-12)
    assert std["maintenance_margin"] == pytest.approx(exp["mm"], rel=1e-12)
    assert std["available_funds"] == pytest.approx(exp["equity"] - exp["im"], rel=1e-12)
    assert std["im_utilisation"] == pytest.approx(exp["im"] / exp["equity"], rel=1e-12)
    assert std["margin_call"] is False
    assert pm["maintenance_margin"] == pytest.approx(0.8 * pm["initial_margin"], rel=1e-12)
    assert pm["initial_margin"] == pytest.approx(pm["grid_loss"] + pm["extended_addon"], rel=1e-12)
    assert 1 <= pm["worst_scenario_id"] <= 27 and pm["worst_scenario_pnl"] == pytest.approx(-pm["grid_loss"])

    # SPAN: every delta of acct-a is long (calls, short puts, the perpetual): no calendar spread; 3 short
    # puts: a short option minimum of 3 x 0.01 coin; the options' value is netted off
    call, put = mark("BTC-15MAR24-65000-C"), mark("BTC-29MAR24-60000-P")
    assert span["spread_charge"] == 0 and span["short_option_minimum"] == pytest.approx(0.03, rel=1e-12)
    assert span["net_option_value"] == pytest.approx(2 * call["mark"] - 3 * put["mark"], rel=1e-12)
    requirement = max(span["grid_loss"] + 0.0, 0.03) - span["net_option_value"]
    assert (
        span["initial_margin"]
        == span["maintenance_margin"]
        == pytest.approx(max(requirement, 0.0), rel=1e-12)
    )
    assert 1 <= span["worst_scenario_id"] <= 16

    # acct-b: short 100 SOL linear perpetual + 10 short SOL calls settled at this snapshot
    sol = accounts[("acct-b", "USDC", "standard")]
    sol_payoff = max(SOL_TWAP - 140.0, 0.0)
    sol_equity = 100000.0 - 0.3 + (100 * 150.0 + 10 * 12.0) - 100 * SOL_PERP_MARK - 10 * sol_payoff
    assert sol["equity"] == pytest.approx(sol_equity, rel=1e-12)
    assert sol["initial_margin"] == pytest.approx(100 * (0.04 + 100 * 0.000005) * SOL_PERP_INDEX, rel=1e-12)
    assert sol["maintenance_margin"] == pytest.approx(
        100 * (0.02 + 100 * 0.000005) * SOL_PERP_INDEX, rel=1e-12
    )
    sol_pm = accounts[("acct-b", "USDC", "portfolio")]
    # a short linear future loses most at +16%: 100 x 151 x 0.16; ids 25-27 are +16% (up, same, down)
    assert sol_pm["initial_margin"] == pytest.approx(100 * SOL_PERP_MARK * 0.16, rel=1e-12)
    assert sol_pm["worst_scenario_id"] == 25 and sol_pm["extended_addon"] == 0
    # SPAN: the full scan move up (+16%, scenarios 11 and 12) beats the extreme one (+32% x 0.35)
    sol_span = accounts[("acct-b", "USDC", "span")]
    assert sol_span["initial_margin"] == pytest.approx(100 * SOL_PERP_MARK * 0.16, rel=1e-12)
    assert sol_span["worst_scenario_id"] == 11 and sol_span["short_option_minimum"] == 0

    # acct-c: a fill of an instrument the lake has no spec of: counted, never priced, equity unknown
    eth = accounts[("acct-c", "ETH", "standard")]
    assert eth["unpriced_positions"] == 1 and eth["equity"] is None and eth["margin_call"] is None

    positions = {(r["account_id"], r["instrument_name"]): r for r in report_rows(seeded, "margin_positions")}
    assert set(positions) == {
        ("acct-a", "BTC-8MAR24-60000-C"), ("acct-a", "BTC-15MAR24-65000-C"), ("acct-a", "BTC-29MAR24-60000-P"),
        ("acct-a", "BTC-PERPETUAL"), ("acct-b", "SOL_USDC-PERPETUAL"), ("acct-b", "SOL_USDC-8MAR24-140-C"),
        ("acct-c", "ETH-PERPETUAL"),
    }, "closed (55000-C) and earlier-settled (7MAR24) positions are not listed"  # fmt: skip
    perp = positions[("acct-a", "BTC-PERPETUAL")]
    assert perp["status"] == "open" and perp["position"] == 15000.0 and perp["fills"] == 2
    assert perp["size_base"] == pytest.approx(15000 / BTC_PERP_MARK) and perp["mark_price"] == BTC_PERP_MARK
    expiring = positions[("acct-a", "BTC-8MAR24-60000-C")]
    assert expiring["status"] == "expired" and expiring["delivery_price"] == pytest.approx(BTC_TWAP)
    assert expiring["value"] == pytest.approx((BTC_TWAP - 60000) / BTC_TWAP) and expiring["standard_im"] == 0
    assert positions[("acct-c", "ETH-PERPETUAL")]["status"] == "unknown"
    assert positions[("acct-b", "SOL_USDC-8MAR24-140-C")]["value"] == pytest.approx(-10 * sol_payoff)

    summary = result.summary()
    assert summary["accounts"] == 3 and summary["positions"] == 7 and summary["unpriced_positions"] == 1
    assert summary["margin_calls"] == 0 and len(summary["files"]) == 3
    csvs = [p for p in result.files if p.suffix == ".csv"]
    first = [p.read_bytes() for p in csvs]
    again = build_margin(seeded, D)
    assert [p.read_bytes() for p in csvs] == first, "a rerun writes the same bytes"
    assert len(report_rows(seeded, "margin_accounts")) == 9, "a rerun replaces the day's rows"
    html = next(p for p in again.files if p.suffix == ".html").read_text()
    assert "acct-a" in html and "BTC-PERPETUAL" in html and math.isfinite(exp["equity"])


def test_a_margin_call_is_flagged(seeded: LakeSettings) -> None:
    con = open_lake(seeded)
    try:  # acct-a withdraws almost everything: its equity falls below the maintenance margin
        con.execute(
            "INSERT INTO desk.transfers (account_id, transfer_id, currency, amount, timestamp, date) "
            "VALUES ('acct-a', 'TRX', 'BTC', -8.9, TIMESTAMP '2024-03-07 21:00:00', DATE '2024-03-07')"
        )
    finally:
        con.close()
    result = build_margin(seeded, D, html=False)
    row = result.accounts.set_index(["account_id", "currency", "model"]).loc[("acct-a", "BTC", "standard")]
    assert row["equity"] == pytest.approx(expected_acct_a()["equity"] - 8.9, rel=1e-12)
    assert row["equity"] < row["maintenance_margin"] and bool(row["margin_call"]) is True
    assert result.summary()["margin_calls"] >= 1


def test_without_the_days_chain_the_build_fails_naming_it(seeded: LakeSettings) -> None:
    with pytest.raises(ChainMissingError, match=r"options chain of 2024-03-09 is not in the lake"):
        build_margin(seeded, D + timedelta(days=1))


def test_without_the_chain_or_instrument_specs_the_build_fails_naming_the_chain(seeded: LakeSettings) -> None:
    """Options held without a spec in the lake (instruments not drained) still need the day's chain."""
    con = open_lake(seeded)
    try:
        con.execute("DELETE FROM market.instruments")
    finally:
        con.close()
    with pytest.raises(ChainMissingError, match=r"options chain of 2024-03-09 is not in the lake"):
        build_margin(seeded, D + timedelta(days=1))


def test_an_expiry_without_index_ticks_in_its_window_has_no_delivery_price(seeded: LakeSettings) -> None:
    """The index feed stopped at 07:20 of D: BTC-8MAR24-60000-C is not settled at the 07:20 tick."""
    con = open_lake(seeded)
    try:
        con.execute(
            "DELETE FROM market.index_prices WHERE index_name = 'btc_usd' AND timestamp >= ?", [TWAP_START]
        )
        build_chain(con, D)
    finally:
        con.close()
    result = build_margin(seeded, D, html=False)
    expiring = result.positions.set_index(["account_id", "instrument_name"]).loc[
        ("acct-a", "BTC-8MAR24-60000-C")
    ]
    assert expiring["status"] == "no_delivery_price" and pd.isna(expiring["delivery_price"])
    btc = result.accounts.set_index(["account_id", "currency", "model"]).loc[("acct-a", "BTC", "standard")]
    assert btc["unpriced_positions"] == 1 and pd.isna(btc["equity"])


def test_report_margin_cli_prints_counts_and_paths(
    lake_in_env: LakeSettings, capsys: pytest.CaptureFixture
) -> None:
    con = open_lake(lake_in_env)
    try:
        seed_margin_day(con)
    finally:
        con.close()
    assert main(["report", "margin", "--date", D.isoformat()]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "reports.margin_accounts 2024-03-08: 9 rows (3 accounts)" in out
    assert "reports.margin_positions 2024-03-08: 7 rows (1 unpriced)" in out
    assert "margin calls: 0" in out
    folder = lake_in_env.reports_dir / "margin" / "2024-03-08"
    for name in (
        "margin_accounts_2024-03-08.csv",
        "margin_positions_2024-03-08.csv",
        "margin_2024-03-08.html",
    ):
        assert str(folder / name) in out and (folder / name).exists()
    assert main(["report", "margin", "--date", "2024-03-09"]) == 1
    assert "error: the options chain of 2024-03-09 is not in the lake" in capsys.readouterr().err
