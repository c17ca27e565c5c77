"""The margin report's column computations (reports/margin.py) on hand-made positions, without a lake.

Expected numbers are domain.md section 4's oracles, pushed through the report's own path (positions in
Deribit's units: inverse futures in USD, options in 1-coin contracts), not recomputed with derivlake.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from derivlake.reports.chain import BusinessDay
from derivlake.reports.margin import (
    MarginParams,
    account_table,
    portfolio_by_account,
    position_greeks,
    span_by_account,
    standard_margin,
    value_positions,
)

DAY = BusinessDay(date(2024, 3, 8))
PARAMS = MarginParams()


def _row(account: str, name: str, position: float, mark: float, **over: object) -> dict[str, object]:
    """One line of margin_positions.sql's output: a perpetual unless ``over`` says otherwise."""
    underlying = name.split("-")[0]
    linear = "_" in underlying
    row: dict[str, object] = {
        "account_id": account,
        "instrument_name": name,
        "kind": "future",
        "base_currency": underlying.split("_")[0],
        "is_inverse": not linear,
        "currency": underlying.split("_")[1] if linear else underlying,
        "underlying": underlying,
        "expiration": pd.NaT,
        "strike": np.nan,
        "option_type": None,
        "position": position,
        "cash_flow": 0.0,
        "fills": 1,
        "mark_price": mark,
        "forward": mark,
        "index_price": mark,
        "mark_iv": np.nan,
        "delta": np.nan,
        "gamma": np.nan,
        "vega": np.nan,
        "theta": np.nan,
        "delivery_price": np.nan,
        "days_to_expiry": np.nan,
    }
    return row | over


def _option(account: str, name: str, contracts: float, mark: float, forward: float, iv: float) -> dict:
    _, _, strike, right = name.split("-")
    return _row(
        account, name, contracts, mark,
        kind="option", strike=float(strike), option_type="call" if right == "C" else "put",
        expiration=pd.Timestamp("2024-04-07 08:00"), days_to_expiry=30.0, forward=forward, mark_iv=iv,
        delta=0.3, gamma=1e-5, vega=50.0, theta=-40.0,
    )  # fmt: skip


def _report(rows: list[dict], deposits: dict[tuple[str, str], float]) -> pd.DataFrame:
    valued = standard_margin(value_positions(pd.DataFrame(rows)), PARAMS.standard)
    models = {
        "portfolio": portfolio_by_account(valued, PARAMS.portfolio),
        "span": span_by_account(valued, PARAMS.span),
    }
    cash = pd.DataFrame(
        [{"account_id": a, "currency": c, "deposits": v, "fees": 0.0} for (a, c), v in deposits.items()]
    )
    accounts = account_table(position_greeks(valued), cash, models, DAY)
    return accounts.set_index(["account_id", "currency", "model"])


def test_standard_margin_oracles_through_the_report() -> None:
    """domain.md 4.1 and 4.2, each oracle an account of its own."""
    rows = [
        _row("btc-usdc-25", "BTC_USDC-PERPETUAL", 25.0, 100_000.0),
        _row("btc-usdc-350", "BTC_USDC-PERPETUAL", -350.0, 100_000.0),
        _row("btc-inverse-25", "BTC-PERPETUAL", 25 * 100_000.0, 100_000.0),  # inverse: USD amount
        _row("sol-25", "SOL_USDC-PERPETUAL", 25.0, 200.0),
        _row("sol-6000", "SOL_USDC-PERPETUAL", 6_000.0, 200.0),
        _option("call-110k", "BTC-7APR24-110000-C", -1.0, 0.02, 100_000.0, 60.0),
        _option("call-100k", "BTC-7APR24-100000-C", -2.0, 0.05, 100_000.0, 60.0),
        _option("call-90k", "BTC-7APR24-90000-C", -1.0, 0.12, 100_000.0, 60.0),
        _option("put-90k", "BTC-7APR24-90000-P", -1.0, 0.015, 100_000.0, 60.0),
        _option("put-100k", "BTC-7APR24-100000-P", -1.0, 0.70, 60_000.0, 60.0),
        _option("put-200k", "BTC-7APR24-200000-P", -3.0, 2.34, 60_000.0, 60.0),
        _option("long-call", "BTC-7APR24-100000-C", 5.0, 0.05, 100_000.0, 60.0),  # nothing beyond premium
    ]
    accounts = {r["account_id"]: r["currency"] for r in rows}
    std = _report(rows, {(a, c): 1e9 for a, c in accounts.items()}).xs("standard", level="model")
    expected = {  # account: (IM, MM) in the account currency
        "btc-usdc-25": (53_125.0, 28_125.0),
        "btc-usdc-350": (1_312_500.0, 350 * 0.0275 * 100_000.0),
        "btc-inverse-25": (0.53125, 0.28125),
        "sol-25": (200.625, 100.625),
        "sol-6000": (84_000.0, 6_000 * 0.05 * 200.0),
        "call-110k": (0.120, 0.095),
        "call-100k": (2 * 0.200, 2 * 0.125),
        "call-90k": (0.270, 0.195),
        "put-90k": (0.115, 0.090),
        "put-100k": (0.850, 0.775),
        "put-200k": (3 * 2.5155, 3 * 2.5155),
        "long-call": (0.0, 0.0),
    }
    for account, (im, mm) in expected.items():
        row = std.loc[(account, accounts[account])]
        assert row["initial_margin"] == pytest.approx(im, rel=1e-12), account
        assert row["maintenance_margin"] == pytest.approx(mm, rel=1e-12), account


def test_portfolio_perpetual_oracle_through_the_report() -> None:
    """domain.md 4.3: a long inverse perpetual of q = 0.3145384 BTC loses 0.0599121 BTC at -16%, the worst
    grid scenario (ids 1-3 are -16% with vol up, same, down: a tie, the lowest id); MM/IM = 0.8."""
    mark = 100_000.0
    rows = [_row("perp", "BTC-PERPETUAL", 0.3145384 * mark, mark)]
    pm = _report(rows, {("perp", "BTC"): 1.0}).loc[("perp", "BTC", "portfolio")]
    assert pm["worst_scenario_id"] == 1
    assert round(pm["worst_scenario_pnl"], 7) == -0.0599121
    assert round(pm["initial_margin"], 7) == 0.0599121 and pm["extended_addon"] == 0.0
    assert round(pm["maintenance_margin"] / pm["initial_margin"], 6) == 0.8


def test_a_position_the_scenarios_cannot_reprice_leaves_the_margin_unknown() -> None:
    """A short option without a mark IV has a standard margin (marks and strikes suffice) but no scenario
    P&L: the portfolio and SPAN margins of its currency are unknown, never 0 (which reads "no margin
    needed" and hides a margin call); the other underlyings of the currency do not stand in for it."""
    rows = [
        _option("a", "BTC-7APR24-110000-C", -10.0, 0.02, 100_000.0, np.nan),
        _row("b", "SOL_USDC-PERPETUAL", -100.0, 150.0),
        _option("b", "BTC_USDC-7APR24-110000-C", -1.0, 2_000.0, 100_000.0, np.nan),
        _row("c", "SOL_USDC-PERPETUAL", -100.0, 150.0),
    ]
    out = _report(rows, {("a", "BTC"): 1.0, ("b", "USDC"): 1e6, ("c", "USDC"): 1e6, ("d", "USDC"): 5.0})
    a = out.loc[("a", "BTC", "standard")]
    assert a["initial_margin"] == pytest.approx(10 * 0.120, rel=1e-12)  # domain.md 4.2's first oracle
    assert a["equity"] == pytest.approx(1.0 - 10 * 0.02, rel=1e-12)
    assert bool(a["margin_call"])  # equity 0.8 < MM 10 x 0.095
    for account, currency in (("a", "BTC"), ("b", "USDC")):
        for model in ("portfolio", "span"):
            row = out.loc[(account, currency, model)]
            assert np.isnan(row["initial_margin"]) and np.isnan(row["maintenance_margin"]), (account, model)
            assert row["margin_call"] is pd.NA, (account, model)
            assert np.isnan(row["available_funds"]), (account, model)
    # the same SOL short alone: +16% costs 100 x 150 x 0.16 in both scenario models
    for model in ("portfolio", "span"):
        assert out.loc[("c", "USDC", model), "initial_margin"] == pytest.approx(2_400.0, rel=1e-12)
    # an account with cash and no position needs no margin in any model
    for model in ("standard", "portfolio", "span"):
        row = out.loc[("d", "USDC", model)]
        assert row["initial_margin"] == 0.0 and not bool(row["margin_call"])
