"""SPAN margin with risk arrays (domain.md 4.4), in the conventions of ``portfolio.scenario_pnl``.

- ``qty`` is signed (long > 0) in base coin (1-coin option contracts); P&L is in the position's margin
  currency (coin when inverse, USDC when linear), profit positive; futures q (1 - F0/F1) coin inverse,
  q (F1 - F0) USDC linear; options repriced with the section 3 Black model, inverse ones in coin
  (V(F1, s1)/F1 - V(F0, s)/F0), linear ones in USDC; invalid inputs give NaN rows. The repricing is the one
  the portfolio grid uses (``derivlake.margin._scenarios.reprice_pnl``).
- The 16 scenarios (``SPAN_SCENARIOS``): the forward moves by a fraction of ``price_scan_range`` (0, +-1/3,
  +-2/3, +-1, each with vol up and vol down; +-extreme_multiple with the vol unchanged and weight
  extreme_fraction). Vol up = sigma (1 + vol_scan_range), vol down = max(sigma (1 - vol_scan_range), 0).
- The requirement of a group (one underlying of one account and margin currency):
  ``span_requirement(scan_risk, intra_spread_charge, inter-commodity credit, short_option_minimum,
  net_option_value)`` = max(scan + intra - inter, som) - nov.

Groups are integer codes (``pandas.factorize`` / ``groupby().ngroup()``) as for ``portfolio_margin``: one
output row per code 0..n_groups-1 (n_groups defaults to max code + 1, empty groups get 0), negative codes
and codes >= n_groups raise ValueError, and a NaN among the values a function reads for a row (a risk
array, a delta, an option row's qty, unit or value) makes its group's result NaN. A group must not mix
margin currencies (the amounts are summed as they are).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from derivlake.margin._scenarios import group_codes, position_rows, reprice_pnl
from derivlake.margin.params import DEFAULT_SPAN, SpanParams
from derivlake.pricing.black import as_is_call

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

SPAN_VOLS = ("up", "down", "same")


def span_scenarios(params: SpanParams = DEFAULT_SPAN) -> tuple[tuple[int, float, str, float], ...]:
    """The 16 SPAN scenarios as (id, move as a fraction of the price scan range, vol, weight).

    Ids 1..14: moves 0, +1/3, -1/3, +2/3, -2/3, +1, -1, each with vol up (odd id) then vol down, weight 1;
    15 and 16: +-extreme_multiple, vol unchanged, weight extreme_fraction. The order of the standard SPAN
    risk array (domain.md 4.4's oracle arrays).
    """
    rows: list[tuple[int, float, str, float]] = []
    for move in (0.0, 1 / 3, -1 / 3, 2 / 3, -2 / 3, 1.0, -1.0):
        for vol in ("up", "down"):
            rows.append((len(rows) + 1, move, vol, 1.0))
    for move in (params.extreme_multiple, -params.extreme_multiple):
        rows.append((len(rows) + 1, move, "same", params.extreme_fraction))
    return tuple(rows)


SPAN_SCENARIOS: tuple[tuple[int, float, str, float], ...] = span_scenarios(DEFAULT_SPAN)
"""The 16 scenarios with the default parameters (extremes +-2 x the range, weight 0.35)."""


def risk_arrays(
    *,
    is_option: ArrayLike,
    is_inverse: ArrayLike,
    qty: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    tte_years: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    params: SpanParams = DEFAULT_SPAN,
) -> FloatArray:
    """(n, 16) risk arrays: each position's P&L per SPAN scenario (column j = scenario j + 1), weighted
    (the extreme scenarios already x extreme_fraction), in its margin currency, profit positive.

    Arguments broadcast to one row per position (flattened), as ``scenario_pnl``'s; futures ignore strike,
    tte, sigma and is_call (NaN or None allowed). Invalid inputs (non-positive forward, negative sigma or
    tte...) give NaN rows.
    """
    (opt, inv), (q, f0, k, t, s), calls = position_rows(
        (is_option, is_inverse), (qty, forward, strike, tte_years, sigma), is_call
    )
    table = span_scenarios(params)
    moves = np.array([m for _, m, _, _ in table]) * params.price_scan_range
    weights = np.array([w for _, _, _, w in table])
    valid = s >= 0  # else NaN, also for vol down (its floor at 0 would price a negative sigma)
    up = np.where(valid, s * (1.0 + params.vol_scan_range), np.nan)
    down = np.where(valid, np.maximum(s * (1.0 - params.vol_scan_range), 0.0), np.nan)
    vols = np.stack([up, down, s], axis=1)[:, [SPAN_VOLS.index(v) for _, _, v, _ in table]]
    pnl = reprice_pnl(opt=opt, inv=inv, q=q, f0=f0, k=k, t=t, s=s, calls=calls, moves=moves, vols=vols)
    return pnl * weights


def scan_risk(
    arrays: ArrayLike, groups: ArrayLike, *, n_groups: int | None = None
) -> tuple[FloatArray, IntArray]:
    """(scanning risk, worst scenario id) per group: the rows' risk arrays (n, m) are summed per group, the
    risk is max(0, -min over the scenarios) and the id (1-based) is that of the minimum, ties to the lowest
    id. A group that loses nowhere has risk 0 and the id of its smallest P&L (an empty group: 0 and id 1);
    a group with a NaN in its array has NaN risk and id 0 (no scenario).
    """
    a = np.asarray(arrays, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"risk arrays must be 2-D (positions x scenarios), got shape {a.shape}")
    codes, n_groups = group_codes(groups, n_groups, n_rows=a.shape[0])
    sums = np.zeros((n_groups, a.shape[1]))
    np.add.at(sums, codes, a)
    worst = sums.min(axis=1)  # NaN when any P&L of the group is NaN
    ids = sums.argmin(axis=1).astype(np.int64) + 1  # the first minimum: ties go to the lowest id
    ids[np.isnan(worst)] = 0
    return np.maximum(0.0, -worst), ids


def _group_sum(values: FloatArray, codes: IntArray, n_groups: int) -> FloatArray:
    out = np.zeros(n_groups)
    np.add.at(out, codes, values)
    return out


def intra_spread_charge(
    net_delta: ArrayLike,
    expiry_codes: ArrayLike,
    groups: ArrayLike,
    forward_unit: ArrayLike,
    params: SpanParams = DEFAULT_SPAN,
    *,
    n_groups: int | None = None,
) -> FloatArray:
    """Calendar-spread charge per group, in its margin currency.

    Scanning moves every expiry of an underlying together, so a long expiry against a short one looks
    riskless; this charges for it. ``net_delta`` is each row's delta in base coin (qty for a future, qty x
    option delta for an option); ``expiry_codes`` integer codes of the rows' expiries (a perpetual is an
    expiry of its own). With d_e the net delta of expiry e of the group (summed over its rows):
    spreads = min(sum of positive d_e, sum of |negative d_e|) and charge = spreads x intra_spread_rate x
    unit, where unit is the mean of the group's rows' ``forward_unit`` (1.0 for coin-margined rows, F for
    USDC-margined ones: the forwards of a group's expiries differ by their carry only, so the mean is
    the group's price level). Expiry codes go through the same checks as group codes.
    """
    d = np.asarray(net_delta, dtype=np.float64).reshape(-1)
    codes, n_groups = group_codes(groups, n_groups, n_rows=d.size)
    expiry, n_expiries = group_codes(expiry_codes, None, n_rows=d.size, what="expiry")
    unit = np.broadcast_to(np.asarray(forward_unit, dtype=np.float64), d.shape).reshape(-1)
    per_expiry = np.zeros((n_groups, n_expiries))
    np.add.at(per_expiry, (codes, expiry), d)
    long = np.maximum(per_expiry, 0.0).sum(axis=1)
    short = np.maximum(-per_expiry, 0.0).sum(axis=1)
    spreads = np.minimum(long, short)  # NaN when a delta of the group is NaN
    rows = np.bincount(codes, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_unit = _group_sum(unit, codes, n_groups) / rows
    return np.where(rows > 0, spreads * params.intra_spread_rate * mean_unit, 0.0)


def short_option_minimum(
    is_option: ArrayLike,
    is_call: ArrayLike,
    qty: ArrayLike,
    forward_unit: ArrayLike,
    groups: ArrayLike,
    params: SpanParams = DEFAULT_SPAN,
    *,
    n_groups: int | None = None,
) -> FloatArray:
    """Short option minimum per group: short_option_minimum x max(short calls, short puts), in the margin
    currency.

    Each short option row counts -qty contracts valued at its own ``forward_unit`` (1.0 for coin-margined,
    F for USDC-margined), so short calls = sum over short call rows of -qty x unit, the same for puts (with
    one unit per group, as for coin, that is max(contracts) x rate x unit). Long options and futures count
    nothing; ``is_call`` is read on option rows only (None allowed on futures). A NaN qty or unit on an
    option row makes its group NaN.
    """
    (opt,), (q, unit), calls = position_rows((is_option,), (qty, forward_unit), is_call)
    codes, n_groups = group_codes(groups, n_groups, n_rows=q.size)
    is_c = np.zeros(q.shape, dtype=bool)
    i = np.flatnonzero(opt)
    if i.size:
        is_c[i] = as_is_call(calls[i])
    short = np.where(opt, np.maximum(-q, 0.0) * unit, 0.0)
    short_calls = _group_sum(np.where(is_c, short, 0.0), codes, n_groups)
    short_puts = _group_sum(np.where(is_c, 0.0, short), codes, n_groups)
    return params.short_option_minimum * np.maximum(short_calls, short_puts)


def net_option_value(
    is_option: ArrayLike, qty: ArrayLike, value: ArrayLike, groups: ArrayLike, *, n_groups: int | None = None
) -> FloatArray:
    """Net option value per group: sum of qty x value over the option rows (long positive, short negative),
    ``value`` being the option's current price per contract in the margin currency (coin for inverse
    options, USDC for linear ones). Futures rows count nothing (their value may be NaN)."""
    (opt,), (q, v), _ = position_rows((is_option,), (qty, value), None)
    codes, n_groups = group_codes(groups, n_groups, n_rows=q.size)
    return _group_sum(np.where(opt, q * v, 0.0), codes, n_groups)


def span_requirement(
    scan: ArrayLike, intra: ArrayLike, inter: ArrayLike, som: ArrayLike, nov: ArrayLike
) -> FloatArray:
    """max(scan + intra - inter, som) - nov, elementwise (broadcast; NaN propagates).

    domain.md 4.4: scanning risk, plus the intra-commodity spread charge, minus inter-commodity credits,
    floored by the short option minimum, minus the net option value. Not floored at 0: when long options
    are worth more than the risk the result is negative (the options' value covers the risk with room to
    spare); the caller decides whether to floor it at 0 or count the surplus, e.g. against other groups.
    Short options make nov negative, so their premium is added to the requirement.
    """
    scan, intra, inter, som, nov = (np.asarray(a, dtype=np.float64) for a in (scan, intra, inter, som, nov))
    return np.maximum(scan + intra - inter, som) - nov
