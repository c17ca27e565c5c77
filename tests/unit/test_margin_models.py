"""Margin models against the oracles of domain.md section 4 and an independent standard-library repricing."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from derivlake.margin import (
    MARGIN_COLUMNS,
    SCENARIO_VOLS,
    FutureRates,
    PortfolioParams,
    StandardParams,
    extended_table,
    future_margin,
    future_margin_rates,
    portfolio_margin,
    scenario_pnl,
    scenario_table,
    shocked_vols,
    short_option_margin,
)

STD = StandardParams()
PM = PortfolioParams()
BTC = STD.rates_for("BTC")
SOL = STD.rates_for("SOL")

# domain.md 4.2: (F, K, is_call, mark, IM, MM)
OPTION_ORACLES = [
    (100_000.0, 110_000.0, True, 0.02, 0.120, 0.095),
    (100_000.0, 100_000.0, True, 0.05, 0.200, 0.125),
    (100_000.0, 90_000.0, True, 0.12, 0.270, 0.195),
    (100_000.0, 90_000.0, False, 0.015, 0.115, 0.090),
    (60_000.0, 100_000.0, False, 0.70, 0.850, 0.775),
    (60_000.0, 200_000.0, False, 2.34, 2.5155, 2.5155),
]
# domain.md 4.3: inverse perpetual long of q BTC, move -> P&L (7 decimals)
PERP_Q = 0.3145384
PERP_ORACLE = {
    -0.16: -0.0599121,
    -0.12: -0.0428916,
    -0.08: -0.0273512,
    -0.04: -0.0131058,
    0.0: 0.0,
    0.04: 0.0120976,
    0.08: 0.0232991,
}


def _grid_id(move_index: int, vol: str) -> int:
    """Independent statement of the id layout: 3 vols per move, moves ascending, ids from 1."""
    return 1 + 3 * move_index + SCENARIO_VOLS.index(vol)


def _black(F: float, K: float, T: float, sigma: float, is_call: bool) -> float:
    """Undiscounted Black with math.erf only (independent of scipy and the code under test)."""
    intrinsic = max(F - K, 0.0) if is_call else max(K - F, 0.0)
    sd = sigma * math.sqrt(T)
    if sd == 0.0:
        return intrinsic

    def n(x: float) -> float:
        return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))

    d1 = (math.log(F / K) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    return F * n(d1) - K * n(d2) if is_call else K * n(-d2) - F * n(-d1)


def _vol_shock(sigma: float, dte: float, vol: str) -> float:
    p = 0.3 if dte < 30 else 0.13
    scale = math.pow(30.0 / dte, p)
    if vol == "up":
        return max(sigma * (1.0 + 0.5 * scale), 0.5)
    if vol == "down":
        return max(sigma * (1.0 - 0.25 * scale), 0.0)
    return sigma


def _future(qty: float, forward: float = 100_000.0, inverse: bool = True) -> dict[str, object]:
    return {
        "is_option": False,
        "is_inverse": inverse,
        "qty": qty,
        "forward": forward,
        "strike": np.nan,
        "tte_years": np.nan,
        "sigma": np.nan,
        "is_call": None,
        "dte_days": np.nan,
    }


def _option(qty: float, forward: float, strike: float, dte: float, sigma: float, is_call, inverse: bool):
    return {
        "is_option": True,
        "is_inverse": inverse,
        "qty": qty,
        "forward": forward,
        "strike": strike,
        "tte_years": dte / 365.0,
        "sigma": sigma,
        "is_call": is_call,
        "dte_days": dte,
    }


def _pnl(*rows: dict[str, object], params: PortfolioParams = PM) -> tuple[np.ndarray, np.ndarray]:
    cols = {
        key: np.array([r[key] for r in rows], dtype=object if key == "is_call" else None) for key in rows[0]
    }
    return scenario_pnl(**cols, params=params)


# ------------------------------------------------------------------------------------------- params


def test_params_defaults_and_immutability() -> None:
    assert STD.rates_for("btc") == FutureRates(0.02, 0.01, 0.00005)
    assert STD.rates_for("ETH") == BTC
    assert STD.rates_for("SOL") == FutureRates(0.04, 0.02, 0.000005)
    assert STD.rates_for("XRP") == STD.default_futures == BTC
    with pytest.raises(TypeError):
        STD.futures["BTC"] = SOL  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        PM.mm_factor = 1.0  # type: ignore[misc]
    assert StandardParams() == STD and hash(StandardParams()) == hash(STD)
    assert (PM.price_range, PM.buckets, PM.mm_factor, PM.extended_damping) == (0.16, 4, 0.8, 0.03)


# ------------------------------------------------------------------------------- standard: futures


def test_btc_future_oracles_scalar() -> None:
    im_rate, mm_rate = future_margin_rates(25, BTC)
    assert im_rate == pytest.approx(0.02125, abs=1e-15)
    assert mm_rate == pytest.approx(0.01125, abs=1e-15)
    im, mm = future_margin(25, BTC)
    assert im == pytest.approx(0.53125, abs=1e-12)
    assert mm == pytest.approx(0.28125, abs=1e-12)
    assert im * 100_000 == pytest.approx(53_125.0, abs=1e-8)
    im_rate, _ = future_margin_rates(350, BTC)
    im, _ = future_margin(350, BTC)
    assert im_rate == pytest.approx(0.0375, abs=1e-15)
    assert im == pytest.approx(13.125, abs=1e-12)
    assert im * 100_000 == pytest.approx(1_312_500.0, abs=1e-6)


def test_sol_usdc_future_oracles_scalar() -> None:
    im, mm = future_margin(25, SOL)
    assert im * 200 == pytest.approx(200.625, abs=1e-9)
    assert mm * 200 == pytest.approx(100.625, abs=1e-9)
    im, _ = future_margin(6_000, SOL)
    assert im * 200 == pytest.approx(84_000.0, abs=1e-8)


def test_future_oracles_vectorised_and_short_positions() -> None:
    im, mm = future_margin(np.array([25.0, -350.0, 0.0]), BTC)  # a short pays the same as a long
    np.testing.assert_allclose(im * 100_000, [53_125.0, 1_312_500.0, 0.0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(mm, [0.28125, 350 * 0.0275, 0.0], rtol=0, atol=1e-12)
    im, mm = future_margin(np.array([-25.0, 6_000.0]), SOL)
    np.testing.assert_allclose(im * 200, [200.625, 84_000.0], rtol=0, atol=1e-8)
    assert mm[0] * 200 == pytest.approx(100.625, abs=1e-9)
    assert np.isnan(future_margin(np.nan, BTC)[0])


# ------------------------------------------------------------------------------- standard: options


@pytest.mark.parametrize(("F", "K", "is_call", "mark", "im", "mm"), OPTION_ORACLES)
def test_short_option_oracles_scalar(
    F: float, K: float, is_call: bool, mark: float, im: float, mm: float
) -> None:
    got_im, got_mm = short_option_margin(F, K, mark, is_call, STD)
    assert got_im.shape == ()
    assert float(got_im) == pytest.approx(im, abs=1e-12)
    assert float(got_mm) == pytest.approx(mm, abs=1e-12)
    # the same with the option type as a string
    s_im, s_mm = short_option_margin(F, K, mark, "call" if is_call else "put", STD)
    assert (float(s_im), float(s_mm)) == (float(got_im), float(got_mm))


def test_short_option_oracles_vectorised() -> None:
    F, K, c, mark, im, mm = (np.array(col) for col in zip(*OPTION_ORACLES, strict=True))
    got_im, got_mm = short_option_margin(F, K, mark, np.where(c, "call", "put"), STD)
    np.testing.assert_allclose(got_im, im, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_mm, mm, rtol=0, atol=1e-12)
    assert (got_im >= got_mm).all()


def test_short_put_floor_binds_only_deep_in_the_money() -> None:
    # mark 2.34 > 1: 0.075 x mark exceeds 0.075 and IM is lifted to MM
    im, mm = short_option_margin(60_000, 200_000, 2.34, False, STD)
    assert float(mm) == pytest.approx(0.075 * 2.34 + 2.34, abs=1e-12)
    assert float(im) == float(mm)


def test_short_option_invalid_inputs_give_nan() -> None:
    im, mm = short_option_margin(
        [0.0, 100_000.0, 100_000.0, np.nan], [100_000.0, -1.0, 90_000.0, 1.0], [0.1, 0.1, -0.1, 0.1], True
    )
    assert np.isnan(im).all() and np.isnan(mm).all()
    with pytest.raises(ValueError):
        short_option_margin(100_000, 90_000, 0.1, "straddle")


# ------------------------------------------------------------------------------- portfolio: tables


def test_scenario_table() -> None:
    table = scenario_table(PM)
    assert [i for i, _, _ in table] == list(range(1, 28))
    moves = sorted({m for _, m, _ in table})
    np.testing.assert_allclose(
        moves, [-0.16, -0.12, -0.08, -0.04, 0.0, 0.04, 0.08, 0.12, 0.16], rtol=0, atol=1e-15
    )
    for j, move in enumerate(moves):
        cells = [(i, v) for i, m, v in table if m == move]
        assert [v for _, v in cells] == ["up", "same", "down"]
        assert [i for i, _ in cells] == [_grid_id(j, v) for v in ("up", "same", "down")]
    ext = extended_table(PM)
    assert [i for i, _, _ in ext] == list(range(28, 36))
    assert [m for _, m, _ in ext] == [-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert {v for _, _, v in ext} == {"up"}


def test_shocked_vols_short_and_long_dated() -> None:
    up, down = shocked_vols([0.6, 0.8, 0.3], [7.0, 90.0, 90.0], PM)
    s7 = math.pow(30.0 / 7.0, 0.3)
    s90 = math.pow(30.0 / 90.0, 0.13)
    np.testing.assert_allclose(up, [0.6 * (1 + 0.5 * s7), 0.8 * (1 + 0.5 * s90), 0.5], rtol=1e-14)
    np.testing.assert_allclose(
        down, [0.6 * (1 - 0.25 * s7), 0.8 * (1 - 0.25 * s90), 0.3 * (1 - 0.25 * s90)], rtol=1e-14
    )
    assert 0.3 * (1 + 0.5 * s90) < 0.5  # so the third up vol is the 0.5 floor
    # DTE exactly 30 uses the long power but the scale is 1 either way
    up30, down30 = shocked_vols(0.6, 30.0, PM)
    assert (float(up30), float(down30)) == pytest.approx((0.9, 0.45), abs=1e-15)


def test_shocked_vols_guards() -> None:
    up, down = shocked_vols([0.6, 0.6, 0.6], [0.0, -2.0, 1.0 / 1440.0], PM)
    assert up[0] == up[1] == up[2] and np.isfinite(up[0])  # DTE floored at one minute
    assert (down == 0.0).all()  # a shock beyond 100% floors at zero vol
    up, down = shocked_vols([-0.1, np.nan], 10.0, PM)
    assert np.isnan(up).all() and np.isnan(down).all()


# ----------------------------------------------------------------------------- portfolio: scenario P&L


def test_inverse_perpetual_oracle_every_vol() -> None:
    grid, ext = _pnl(_future(PERP_Q))
    assert grid.shape == (1, 27) and ext.shape == (1, 8)
    for j, (move, expected) in enumerate(PERP_ORACLE.items()):
        for vol in SCENARIO_VOLS:
            got = grid[0, _grid_id(j, vol) - 1]
            assert got == pytest.approx(expected, abs=5e-8), (move, vol)
            assert got == pytest.approx(PERP_Q * (1 - 1 / (1 + move)), rel=1e-12, abs=1e-15)
    assert grid[0, _grid_id(4, "same") - 1] == 0.0
    np.testing.assert_allclose(ext[0], [PERP_Q * (1 - 1 / (1 + m)) for m in PM.extended_moves], rtol=1e-12)
    margin = portfolio_margin(grid, ext, [0], PM).loc[0]
    assert margin["initial_margin"] > 0
    assert round(margin["maintenance_margin"] / margin["initial_margin"], 6) == 0.8


def test_linear_future_and_usd_amount_convention() -> None:
    # a linear future is q (F1 - F0) USDC; an inverse future of USD amount A has q = A / F0
    grid, _ = _pnl(_future(2.0, 150.0, inverse=False), _future(31_453.84 / 100_000.0))
    np.testing.assert_allclose(grid[0, ::3], [2.0 * 150.0 * (0.04 * i) for i in range(-4, 5)], atol=1e-12)
    assert grid[1, 0] == pytest.approx(-0.0599121, abs=5e-8)


@pytest.mark.parametrize(
    ("row", "inverse"),
    [
        (_option(2.0, 100_000.0, 105_000.0, 20.0, 0.55, True, True), True),  # long inverse call
        (_option(-5.0, 150.0, 140.0, 10.0, 0.80, "put", False), False),  # short linear put
    ],
)
def test_option_pnl_against_independent_repricing(row: dict, inverse: bool) -> None:
    grid, ext = _pnl(row)
    q, F0, K, T, s, dte = (row[k] for k in ("qty", "forward", "strike", "tte_years", "sigma", "dte_days"))
    is_call = row["is_call"] in (True, "call")

    def value(F: float, sigma: float) -> float:
        v = _black(F, K, T, sigma, is_call)
        return v / F if inverse else v

    for sid, move, vol in [t for t in scenario_table(PM) if t[0] in (1, 8, 14, 20, 24, 27)]:
        expected = q * (value(F0 * (1 + move), _vol_shock(s, dte, vol)) - value(F0, s))
        assert grid[0, sid - 1] == pytest.approx(expected, rel=1e-9, abs=1e-12), sid
    for sid, move, _ in extended_table(PM):
        expected = q * (value(F0 * (1 + move), _vol_shock(s, dte, "up")) - value(F0, s))
        assert ext[0, sid - 28] == pytest.approx(expected, rel=1e-9, abs=1e-12), sid
    assert grid[0, 13] == 0.0  # move 0, vol same


def test_scenario_pnl_is_row_independent() -> None:
    rows = [
        _future(0.5),
        _option(1.0, 100_000.0, 90_000.0, 5.0, 0.7, "put", True),
        _future(-3.0, 2_500.0, inverse=False),
        _option(-2.0, 3_000.0, 3_200.0, 60.0, 0.45, "call", False),
    ]
    grid, ext = _pnl(*rows)
    for i, row in enumerate(rows):
        g1, e1 = _pnl(row)
        np.testing.assert_allclose(grid[i], g1[0], rtol=1e-14, atol=0)
        np.testing.assert_allclose(ext[i], e1[0], rtol=1e-14, atol=0)


@pytest.mark.parametrize("inverse", [False, True])
def test_put_call_parity_synthetic_is_flat(inverse: bool) -> None:
    # call - put = F - K (undiscounted); with K = F0 the hedge is q = 1 future (inverse: q = K / F0 = 1)
    F0 = 100_000.0
    grid, ext = _pnl(
        _option(1.0, F0, F0, 14.0, 0.6, True, inverse),
        _option(-1.0, F0, F0, 14.0, 0.6, False, inverse),
        _future(-1.0, F0, inverse=inverse),
    )
    total = np.concatenate([grid.sum(axis=0), ext.sum(axis=0)])
    scale = 1.0 if inverse else F0
    np.testing.assert_allclose(total, 0.0, atol=1e-12 * scale)
    assert np.abs(grid[0]).max() > 1e-3 * scale  # the legs themselves do move


def test_scenario_pnl_invalid_inputs_give_nan_rows() -> None:
    grid, ext = _pnl(
        _future(1.0, 0.0),
        _option(1.0, 100_000.0, 90_000.0, 5.0, -0.2, True, True),
        _option(1.0, 100_000.0, 90_000.0, -1.0, 0.5, True, True),  # negative tte (dte is floored)
        _future(1.0),
    )
    assert np.isnan(grid[:3]).all() and np.isnan(ext[:3]).all()
    assert np.isfinite(grid[3]).all()


# --------------------------------------------------------------------------- portfolio: aggregation


TAIL = dataclasses.replace(PM, extended_damping=0.5)
"""A heavy damping factor, so that the tail of a lone perpetual sets its margin."""


def test_portfolio_margin_groups() -> None:
    F0, dte, sigma = 100_000.0, 30.0, 0.6
    accounts = ["hedged", "hedged", "put", "perp"]
    codes, names = pd.factorize(pd.Series(accounts))
    grid, ext = _pnl(
        _future(0.5),
        _future(-0.5),
        _option(1.0, F0, F0, dte, sigma, "put", True),
        _future(1.0),
    )
    m = portfolio_margin(grid, ext, codes, TAIL)
    assert list(names) == ["hedged", "put", "perp"]
    assert list(m.index) == [0, 1, 2] and m.index.name == "group"
    assert list(m.columns) == [*MARGIN_COLUMNS, *(f"pnl_{i}" for i in range(1, 36))]
    pnl = m[[f"pnl_{i}" for i in range(1, 36)]].to_numpy()
    np.testing.assert_allclose(pnl[1], np.concatenate([grid[2], ext[2]]), rtol=0)  # the put alone
    np.testing.assert_allclose(pnl[2], np.concatenate([grid[3], ext[3]]), rtol=0)

    # hedged: every scenario is 0, nothing loses, the tie goes to scenario 1
    hedged = m.loc[0]
    assert (pnl[0] == 0).all()
    assert (hedged["worst_scenario_id"], hedged["worst_pnl"]) == (1, 0.0)
    assert (hedged["initial_margin"], hedged["maintenance_margin"]) == (0.0, 0.0)

    # long put: worst at +16% with vol down; loss bounded by the premium
    put = m.loc[1]
    premium = _black(F0, F0, dte / 365, sigma, False) / F0
    f1 = 1.16 * F0
    loss = premium - _black(f1, F0, dte / 365, _vol_shock(sigma, dte, "down"), False) / f1
    assert put["worst_scenario_id"] == _grid_id(8, "down") == 27
    assert put["worst_pnl"] == pytest.approx(-loss, rel=1e-9)
    assert put["grid_loss"] == pytest.approx(loss, rel=1e-9)
    assert put["extended_loss"] < put["grid_loss"] and put["extended_addon"] == 0.0
    assert put["initial_margin"] == pytest.approx(loss, rel=1e-9) and put["initial_margin"] <= premium

    # long perp alone, tail damped by 0.5: the -66% tail (scenario 28) beats the -16% grid loss
    perp = m.loc[2]
    grid_loss = -(1 - 1 / 0.84)
    ext_loss = -(1 - 1 / 0.34) * 0.5
    assert perp["worst_scenario_id"] == 28
    assert perp["worst_pnl"] == pytest.approx(-ext_loss, rel=1e-12)
    assert perp["grid_loss"] == pytest.approx(grid_loss, rel=1e-12)
    assert perp["extended_loss"] == pytest.approx(ext_loss, rel=1e-12)
    assert perp["extended_addon"] == pytest.approx(ext_loss - grid_loss, rel=1e-12)
    assert perp["initial_margin"] == pytest.approx(ext_loss, rel=1e-12)

    im = m["initial_margin"].to_numpy()
    np.testing.assert_allclose(im, np.maximum(0.0, -m["worst_pnl"].to_numpy()), rtol=1e-15)
    np.testing.assert_allclose(m["maintenance_margin"].to_numpy(), 0.8 * im, rtol=0)


def test_portfolio_margin_without_loss_and_with_nan() -> None:
    # a group whose every scenario gains reports its (positive) minimum and no margin
    grid = np.full((2, 27), 1.0)
    grid[0, 5] = 0.25
    grid[1, 3] = np.nan
    ext = np.full((2, 8), 2.0)
    m = portfolio_margin(grid, ext, [0, 1], TAIL, n_groups=3)  # damped tail 1.0 > 0.25
    assert str(m["worst_scenario_id"].dtype) == "Int64"
    assert (m.loc[0, "worst_scenario_id"], m.loc[0, "worst_pnl"], m.loc[0, "initial_margin"]) == (
        6,
        0.25,
        0.0,
    )
    assert m.loc[1, "worst_scenario_id"] is pd.NA
    assert np.isnan(m.loc[1, "initial_margin"]) and np.isnan(m.loc[1, "worst_pnl"])
    assert (m.loc[2, "worst_scenario_id"], m.loc[2, "initial_margin"]) == (1, 0.0)  # empty group
    assert len(portfolio_margin(grid[:0], ext[:0], [], PM)) == 0
    with pytest.raises(ValueError):
        portfolio_margin(grid, ext, [0, -1], PM)
    with pytest.raises(ValueError):
        portfolio_margin(grid, ext[:1], [0, 1], PM)
    with pytest.raises(ValueError):
        portfolio_margin(grid, ext, [0, 1], PM, n_groups=1)


@pytest.mark.parametrize("inverse", [True, False])
@pytest.mark.parametrize("qty", [1.0, -1.0])
def test_default_damping_leaves_futures_to_the_grid(inverse: bool, qty: float) -> None:
    """The default extended damping adds nothing to a future: its tail is for short far-OTM options."""
    grid, ext = _pnl(_future(qty, inverse=inverse))
    m = portfolio_margin(grid, ext, np.zeros(1, dtype=int), PM)
    assert m.loc[0, "extended_addon"] == 0.0 and 1 <= m.loc[0, "worst_scenario_id"] <= 27


def test_default_damping_charges_a_short_far_otm_call_for_its_tail() -> None:
    grid, ext = _pnl(_option(-1.0, 100_000.0, 200_000.0, 30.0, 0.6, "call", True))
    m = portfolio_margin(grid, ext, np.zeros(1, dtype=int), PM)
    assert m.loc[0, "extended_addon"] > 0 and m.loc[0, "worst_scenario_id"] >= 28
