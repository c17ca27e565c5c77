"""SPAN risk arrays (domain.md 4.4): the published oracle arrays, an independent standard-library repricing,
and the charges (calendar spread, short option minimum, net option value) worked by hand."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from derivlake.margin import (
    DEFAULT_SPAN,
    SPAN_SCENARIOS,
    SpanParams,
    intra_spread_charge,
    net_option_value,
    portfolio_margin,
    risk_arrays,
    scan_risk,
    short_option_minimum,
    span_requirement,
    span_scenarios,
)
from tests.unit.test_margin_models import _black, _future, _option

# domain.md 4.4 (S&P futures, range 10,000, + = profit)
ORACLE_FUTURE = [
    0,
    0,
    3330,
    3330,
    -3330,
    -3330,
    6670,
    6670,
    -6670,
    -6670,
    10000,
    10000,
    -10000,
    -10000,
    7000,
    -7000,
]
ORACLE_CALL = [
    460,
    -610,
    2640,
    1730,
    -1270,
    -2340,
    5210,
    4540,
    -2540,
    -3430,
    8060,
    7640,
    -3380,
    -3990,
    3130,
    -1500,
]

# the standard scenario list, stated independently of the code: (move in ranges, vol, weight)
EXPECTED_SCENARIOS = [
    (0.0, "up", 1.0),
    (0.0, "down", 1.0),
    (1 / 3, "up", 1.0),
    (1 / 3, "down", 1.0),
    (-1 / 3, "up", 1.0),
    (-1 / 3, "down", 1.0),
    (2 / 3, "up", 1.0),
    (2 / 3, "down", 1.0),
    (-2 / 3, "up", 1.0),
    (-2 / 3, "down", 1.0),
    (1.0, "up", 1.0),
    (1.0, "down", 1.0),
    (-1.0, "up", 1.0),
    (-1.0, "down", 1.0),
    (2.0, "same", 0.35),
    (-2.0, "same", 0.35),
]


def _arrays(*rows: dict[str, object], params: SpanParams = DEFAULT_SPAN) -> np.ndarray:
    cols = {
        key: np.array([r[key] for r in rows], dtype=object if key == "is_call" else None)
        for key in rows[0]
        if key != "dte_days"  # the portfolio grid's input; SPAN's vol scan does not depend on it
    }
    return risk_arrays(**cols, params=params)


# ------------------------------------------------------------------------------------ params, table


def test_params_defaults_and_immutability() -> None:
    p = SpanParams()
    assert p == DEFAULT_SPAN
    assert (
        p.price_scan_range,
        p.vol_scan_range,
        p.extreme_multiple,
        p.extreme_fraction,
        p.short_option_minimum,
        p.intra_spread_rate,
    ) == (0.16, 0.25, 2.0, 0.35, 0.01, 0.01)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.price_scan_range = 0.2  # type: ignore[misc]


def test_scenario_table() -> None:
    assert [s[0] for s in SPAN_SCENARIOS] == list(range(1, 17))
    for (sid, move, vol, weight), (e_move, e_vol, e_weight) in zip(
        SPAN_SCENARIOS, EXPECTED_SCENARIOS, strict=True
    ):
        assert move == pytest.approx(e_move, abs=1e-15), sid
        assert (vol, weight) == (e_vol, e_weight), sid
    assert span_scenarios(DEFAULT_SPAN) == SPAN_SCENARIOS
    other = span_scenarios(dataclasses.replace(DEFAULT_SPAN, extreme_multiple=3.0, extreme_fraction=0.3))
    assert other[14][1:] == (3.0, "same", 0.3) and other[15][1:] == (-3.0, "same", 0.3)
    assert other[:14] == SPAN_SCENARIOS[:14]


# ---------------------------------------------------------------------------- scan risk: the oracle


def test_oracle_scan_risk() -> None:
    fut, call = np.array(ORACLE_FUTURE, float), np.array(ORACLE_CALL, float)
    risk, worst = scan_risk(call[None, :], [0])
    assert (risk[0], worst[0]) == (3_990.0, 14)
    # covered write: long future + short call, as two positions of one group
    risk, worst = scan_risk(np.stack([fut, -call]), [0, 0])
    assert (risk[0], worst[0]) == (6_620.0, 13)
    # long future: scenarios 13 and 14 tie at -10,000, the lower id wins
    risk, worst = scan_risk(fut[None, :], [0])
    assert (risk[0], worst[0]) == (10_000.0, 13)


def test_oracle_scan_risk_grouped_in_one_call() -> None:
    fut, call = np.array(ORACLE_FUTURE, float), np.array(ORACLE_CALL, float)
    accounts = ["call", "covered", "covered", "future", "covered"]
    codes, names = pd.factorize(pd.Series(accounts))
    arrays = np.stack([call, fut, -call, fut, np.zeros(16)])  # a flat position changes nothing
    risk, worst = scan_risk(arrays, codes)
    assert list(names) == ["call", "covered", "future"]
    np.testing.assert_array_equal(risk, [3_990.0, 6_620.0, 10_000.0])
    np.testing.assert_array_equal(worst, [14, 13, 13])
    assert worst.dtype.kind == "i"


# ----------------------------------------------------------------------------- risk arrays: futures


def test_linear_future_array() -> None:
    q, F, r = 1.0, 100_000.0, 0.16
    got = _arrays(_future(q, F, inverse=False))
    assert got.shape == (1, 16)
    third = q * F * r / 3
    extreme = 0.35 * 2 * r * F * q
    expected = [0, 0, third, third, -third, -third, 2 * third, 2 * third, -2 * third, -2 * third]
    expected += [3 * third, 3 * third, -3 * third, -3 * third, extreme, -extreme]
    np.testing.assert_allclose(got[0], expected, rtol=1e-12, atol=1e-9)
    assert got[0, 0] == 0.0 and got[0, 1] == 0.0
    # the oracle's pattern: scaled to a range of 10,000 it is the oracle up to its rounding to tens
    np.testing.assert_allclose(got[0] / (q * F * r) * 10_000, ORACLE_FUTURE, rtol=0, atol=5.0)
    # a short is the mirror image; 3 coins three times one
    np.testing.assert_allclose(
        _arrays(_future(-3.0, F, inverse=False))[0], -3 * np.array(expected), rtol=1e-12
    )


def test_inverse_future_array() -> None:
    q, F = 0.5, 60_000.0
    got = _arrays(_future(q, F, inverse=True))
    moves = [0.16 * m for m, _, _ in EXPECTED_SCENARIOS]
    weights = [w for _, _, w in EXPECTED_SCENARIOS]
    expected = [w * q * (1 - 1 / (1 + m)) for m, w in zip(moves, weights, strict=True)]
    np.testing.assert_allclose(got[0], expected, rtol=1e-12, atol=1e-15)
    # inverse: a fall loses more coin than the same rise gains
    assert -got[0, 12] > got[0, 10] > 0


# ----------------------------------------------------------------------------- risk arrays: options


@pytest.mark.parametrize(
    ("row", "inverse"),
    [
        (_option(2.0, 100_000.0, 105_000.0, 20.0, 0.55, True, True), True),  # long inverse call
        (_option(-5.0, 150.0, 140.0, 10.0, 0.80, "put", False), False),  # short linear put
        (_option(1.0, 3_000.0, 2_500.0, 45.0, 0.65, "call", False), False),  # long linear ITM call
    ],
)
def test_option_array_against_independent_repricing(row: dict, inverse: bool) -> None:
    got = _arrays(row)
    q, F0, K, T, s = (row[k] for k in ("qty", "forward", "strike", "tte_years", "sigma"))
    is_call = row["is_call"] in (True, "call")

    def value(F: float, sigma: float) -> float:
        v = _black(F, K, T, sigma, is_call)
        return v / F if inverse else v

    shocked = {"up": s * 1.25, "down": s * 0.75, "same": s}
    for sid in (1, 2, 4, 9, 12, 13, 15, 16):
        move, vol, weight = EXPECTED_SCENARIOS[sid - 1]
        expected = weight * q * (value(F0 * (1 + 0.16 * move), shocked[vol]) - value(F0, s))
        assert got[0, sid - 1] == pytest.approx(expected, rel=1e-9, abs=1e-12), sid
    # the extremes: 2 ranges (32%) at the unchanged vol, 35% counted
    e15 = 0.35 * q * (value(F0 * 1.32, s) - value(F0, s))
    e16 = 0.35 * q * (value(F0 * 0.68, s) - value(F0, s))
    assert (got[0, 14], got[0, 15]) == (pytest.approx(e15, rel=1e-9), pytest.approx(e16, rel=1e-9))


def test_vol_down_floors_at_zero() -> None:
    wide = dataclasses.replace(DEFAULT_SPAN, vol_scan_range=1.5)  # sigma (1 - 1.5) < 0 -> 0: intrinsic
    F0, K, T, s = 100_000.0, 90_000.0, 30 / 365, 0.6
    got = _arrays(_option(1.0, F0, K, 30.0, s, "call", False), params=wide)
    assert got[0, 1] == pytest.approx((F0 - K) - _black(F0, K, T, s, True), rel=1e-12)
    assert got[0, 0] == pytest.approx(_black(F0, K, T, 2.5 * s, True) - _black(F0, K, T, s, True), rel=1e-12)


def test_option_arrays_have_the_oracle_structure() -> None:
    """An at-the-money long call and a covered write (long future, short call) behave like the S&P oracle:
    the call's array has the oracle's signs and worst scenario 14, the covered write's worst is 13."""
    F0 = 100_000.0
    call = _arrays(_option(1.0, F0, F0, 30.0, 0.6, "call", False))[0]
    assert (np.sign(call) == np.sign(ORACLE_CALL)).all()
    risk, worst = scan_risk(call[None, :], [0])
    assert worst[0] == 14 and risk[0] == pytest.approx(-call[13], rel=0)
    arrays = _arrays(_future(1.0, F0, inverse=False), _option(-1.0, F0, F0, 30.0, 0.6, "call", False))
    risk, worst = scan_risk(arrays, [0, 0])
    assert worst[0] == 13 and risk[0] == pytest.approx(-(arrays[0, 12] + arrays[1, 12]), rel=1e-15)


def test_put_call_parity_synthetic_is_flat() -> None:
    F0 = 100_000.0
    arrays = _arrays(
        _option(1.0, F0, F0, 14.0, 0.6, True, True),
        _option(-1.0, F0, F0, 14.0, 0.6, False, True),
        _future(-1.0, F0, inverse=True),
    )
    np.testing.assert_allclose(arrays.sum(axis=0), 0.0, atol=1e-12)
    risk, _ = scan_risk(arrays, [0, 0, 0])
    assert risk[0] == pytest.approx(0.0, abs=1e-12)


def test_risk_arrays_row_independence_and_invalid_rows() -> None:
    rows = [
        _future(0.5),
        _option(1.0, 100_000.0, 90_000.0, 5.0, 0.7, "put", True),
        _future(1.0, 0.0),  # non-positive forward
        _option(1.0, 100_000.0, 90_000.0, 5.0, -0.2, "call", True),  # negative sigma (vol down would floor)
        _option(1.0, 100_000.0, 90_000.0, -1.0, 0.5, "call", True),  # negative tte
        _option(-2.0, 3_000.0, 3_200.0, 60.0, 0.45, "call", False),
    ]
    arrays = _arrays(*rows)
    assert np.isnan(arrays[2:5]).all()
    for i in (0, 1, 5):
        assert np.isfinite(arrays[i]).all()
        np.testing.assert_allclose(arrays[i], _arrays(rows[i])[0], rtol=1e-14, atol=0)
    # a NaN row makes its group NaN, with no worst scenario (id 0); other groups are unaffected
    risk, worst = scan_risk(arrays, [0, 0, 1, 1, 2, 3])
    assert np.isfinite(risk[[0, 3]]).all() and np.isnan(risk[[1, 2]]).all()
    assert worst[1] == worst[2] == 0 and worst[0] >= 1 and worst[3] >= 1


# ---------------------------------------------------------------------------- scan risk: grouping


def test_scan_risk_groups_edge_cases() -> None:
    gains = np.full((1, 16), 2.0)
    gains[0, 6] = 0.5
    risk, worst = scan_risk(gains, [1], n_groups=3)
    np.testing.assert_array_equal(risk, [0.0, 0.0, 0.0])  # nothing loses: no risk
    np.testing.assert_array_equal(worst, [1, 7, 1])  # smallest gain; empty groups: all 0, id 1
    risk, worst = scan_risk(np.zeros((0, 16)), [])
    assert risk.shape == worst.shape == (0,)
    with pytest.raises(ValueError):
        scan_risk(gains, [-1])  # factorize's missing key
    with pytest.raises(ValueError):
        scan_risk(gains, [2], n_groups=2)
    with pytest.raises(ValueError):
        scan_risk(gains, [0, 0])
    with pytest.raises(ValueError):
        scan_risk(gains[0], [0])


def test_scan_risk_agrees_with_portfolio_margin_grid_loss() -> None:
    rng = np.random.default_rng(7)
    arrays = rng.normal(size=(12, 16))
    codes = rng.integers(0, 4, size=12)
    risk, worst = scan_risk(arrays, codes, n_groups=5)
    pm = portfolio_margin(arrays, np.full((12, 1), 1e9), codes, n_groups=5)
    np.testing.assert_allclose(risk, pm["grid_loss"].to_numpy(), rtol=1e-15)
    np.testing.assert_array_equal(worst, pm["worst_scenario_id"].to_numpy(dtype=np.int64))


# -------------------------------------------------------------------------------- spread charge


def test_intra_spread_charge_calendar_spread() -> None:
    # group 0: +10 coin delta in expiry 0, -6 in expiry 1 -> 6 spreads; coin-margined unit 1
    got = intra_spread_charge([10.0, -6.0], [0, 1], [0, 0], 1.0, DEFAULT_SPAN)
    assert got.shape == (1,) and got[0] == pytest.approx(6 * 0.01 * 1.0, rel=1e-15)
    # USDC-margined: the unit is the group's mean forward
    got = intra_spread_charge([10.0, -6.0], [0, 1], [0, 0], [100_000.0, 102_000.0], DEFAULT_SPAN)
    assert got[0] == pytest.approx(6 * 0.01 * 101_000.0, rel=1e-15)


def test_intra_spread_charge_offsets_and_groups() -> None:
    net_delta = [10.0, -10.0, 4.0, 3.0, 5.0, -2.0, -2.0, 10.0, -4.0, -3.0, 1.0]
    expiry = [0, 0, 1, 1, 2, 0, 3, 0, 1, 2, 2]
    groups = [0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 4]
    got = intra_spread_charge(net_delta, expiry, groups, 1.0, DEFAULT_SPAN)
    # 0: same-expiry offset -> 0; 1: d = {0: -2, 1: +7, 2: +5, 3: -2} -> min(12, 4) = 4;
    # 2: {0: +10, 1: -4, 2: -3} -> min(10, 7) = 7; 3: empty; 4: one expiry only
    np.testing.assert_allclose(got, [0.0, 4 * 0.01, 7 * 0.01, 0.0, 0.0], rtol=1e-15, atol=0)
    rate = dataclasses.replace(DEFAULT_SPAN, intra_spread_rate=0.05)
    got = intra_spread_charge(net_delta, expiry, groups, 1.0, rate, n_groups=6)
    np.testing.assert_allclose(got, [0.0, 0.2, 0.35, 0.0, 0.0, 0.0], rtol=1e-15, atol=0)


def test_intra_spread_charge_nan_and_invalid_codes() -> None:
    got = intra_spread_charge([10.0, np.nan, 10.0, -6.0], [0, 1, 0, 1], [0, 0, 1, 1], 1.0, DEFAULT_SPAN)
    assert np.isnan(got[0]) and got[1] == pytest.approx(0.06)
    with pytest.raises(ValueError):
        intra_spread_charge([1.0], [-1], [0], 1.0, DEFAULT_SPAN)
    with pytest.raises(ValueError):
        intra_spread_charge([1.0], [0], [-1], 1.0, DEFAULT_SPAN)
    with pytest.raises(ValueError):
        intra_spread_charge([1.0, 2.0], [0], [0, 0], 1.0, DEFAULT_SPAN)
    with pytest.raises(ValueError):
        intra_spread_charge([1.0], [0], [3], 1.0, DEFAULT_SPAN, n_groups=2)


# ------------------------------------------------------------------------ short option minimum, NOV


def test_short_option_minimum() -> None:
    # 3 short calls (2 + 1) and 5 short puts; long options and futures count nothing
    is_option = [True, True, True, True, False, True]
    is_call = np.array([True, True, False, True, None, False], dtype=object)
    qty = [-2.0, -1.0, -5.0, 10.0, -50.0, 7.0]
    got = short_option_minimum(is_option, is_call, qty, 1.0, [0] * 6, DEFAULT_SPAN)
    assert got.shape == (1,) and got[0] == pytest.approx(5 * 0.01 * 1.0, rel=1e-15)
    # USDC-margined at F = 150 per contract; option types as strings; more calls than puts in group 1
    got = short_option_minimum(
        [True, True, True, True],
        ["call", "put", "call", "put"],
        [-3.0, -5.0, -4.0, -1.0],
        150.0,
        [0, 0, 1, 1],
    )
    np.testing.assert_allclose(got, [5 * 0.01 * 150.0, 4 * 0.01 * 150.0], rtol=1e-15)


def test_short_option_minimum_groups_and_nan() -> None:
    got = short_option_minimum(
        [True, True, True, False],
        [True, False, True, None],
        [-1.0, np.nan, 4.0, -1.0],
        [1.0, 1.0, 1.0, np.nan],
        [0, 1, 2, 2],
        n_groups=4,
    )
    assert got[0] == pytest.approx(0.01) and np.isnan(got[1])
    assert got[2] == 0.0 and got[3] == 0.0  # a long option, a future (its NaN unit is not read)
    with pytest.raises(ValueError):
        short_option_minimum([True], [True], [-1.0], 1.0, [-1])


def test_net_option_value() -> None:
    # long 2 calls at 0.05, short 1 put at 0.03, a future (value NaN) ignored; group 1 short only
    got = net_option_value(
        [True, True, False, True], [2.0, -1.0, 3.0, -4.0], [0.05, 0.03, np.nan, 0.02], [0, 0, 0, 1]
    )
    np.testing.assert_allclose(got, [2 * 0.05 - 0.03, -4 * 0.02], rtol=1e-15)
    got = net_option_value([True], [1.0], [np.nan], [0], n_groups=2)
    assert np.isnan(got[0]) and got[1] == 0.0
    with pytest.raises(ValueError):
        net_option_value([True], [1.0], [0.1], [-1])


# ----------------------------------------------------------------------------------- requirement


def test_span_requirement_arithmetic() -> None:
    scan = np.array([0.10, 0.01, 0.02, 0.10, np.nan])
    intra = np.array([0.02, 0.0, 0.0, 0.0, 0.0])
    inter = np.array([0.01, 0.0, 0.0, 0.0, 0.0])
    som = np.array([0.05, 0.05, 0.0, 0.0, 0.05])
    nov = np.array([0.03, 0.01, 0.05, -0.04, 0.0])
    got = span_requirement(scan, intra, inter, som, nov)
    expected = [
        0.10 + 0.02 - 0.01 - 0.03,  # risk above the minimum, less the long options' value
        0.05 - 0.01,  # the short option minimum binds
        0.02 - 0.05,  # long options worth more than the risk: negative, the caller floors or not
        0.10 + 0.04,  # short options (nov < 0) add their premium
        np.nan,
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=1e-17)
    assert float(span_requirement(0.1, 0.0, 0.0, 0.2, 0.0)) == pytest.approx(0.2)  # scalars broadcast


def test_span_end_to_end_covered_write() -> None:
    """One coin-margined group: long 1 inverse future, short 1 inverse call in another expiry."""
    F0, K, days, s = 100_000.0, 110_000.0, 30.0, 0.6
    rows = [_future(1.0, F0, inverse=True), _option(-1.0, F0, K, days, s, "call", True)]
    arrays = _arrays(*rows)
    risk, worst = scan_risk(arrays, [0, 0])
    mark = _black(F0, K, days / 365, s, True) / F0
    call_delta = 0.5 * (
        1
        + math.erf((math.log(F0 / K) + 0.5 * s * s * days / 365) / (s * math.sqrt(days / 365)) / math.sqrt(2))
    )
    coin_delta = call_delta - mark  # domain.md 3: coin delta of an inverse option
    intra = intra_spread_charge([1.0, -coin_delta], [0, 1], [0, 0], 1.0, DEFAULT_SPAN)
    som = short_option_minimum([False, True], [None, True], [1.0, -1.0], 1.0, [0, 0], DEFAULT_SPAN)
    nov = net_option_value([False, True], [1.0, -1.0], [np.nan, mark], [0, 0])
    req = span_requirement(risk, intra, 0.0, som, nov)
    assert worst[0] == 13
    assert intra[0] == pytest.approx(0.01 * coin_delta, rel=1e-12)
    assert som[0] == 0.01 and nov[0] == pytest.approx(-mark, rel=1e-15)
    assert req[0] == pytest.approx(risk[0] + 0.01 * coin_delta + mark, rel=1e-12)
