"""Deribit-style portfolio margin (domain.md 4.3): reprice every position on a grid of forward and vol shocks.

Conventions of ``scenario_pnl``:

- ``qty`` is signed (long > 0) and in units of the base coin: for an inverse future or perpetual the USD
  amount divided by the forward, for a linear future the coin amount, for an option the number of 1-coin
  contracts;
- P&L is in the position's margin currency (coin when inverse, USDC when linear), profit positive;
- each scenario moves the forward to F1 = F0 (1 + m) and, for options, the vol to the shocked vol; options
  are repriced with the section 3 Black model, and the base value uses the unshocked F0 and sigma, so the
  move 0 / vol "same" scenario is exactly 0. Inverse future q (1 - F0/F1) coin; linear future q (F1 - F0)
  USDC; inverse option q (V(F1, s1)/F1 - V(F0, s)/F0) coin; linear option q (V(F1, s1) - V(F0, s)) USDC;
- futures ignore strike, tte, sigma, is_call and dte (NaN or None allowed there).

Scenario ids: 1..27 for the grid (move ascending, then vol up/same/down), 28..35 for the extended table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from derivlake.margin._scenarios import group_codes, position_rows, reprice_pnl
from derivlake.margin.params import DEFAULT_PORTFOLIO, PortfolioParams

if TYPE_CHECKING:
    import pandas as pd

FloatArray = NDArray[np.float64]

SCENARIO_VOLS = ("up", "same", "down")
MIN_DTE_DAYS = 1.0 / 1440.0
"""DTE floor of the vol shock (one minute): (30/DTE)^p is infinite at expiry and undefined after it."""


def grid_moves(params: PortfolioParams = DEFAULT_PORTFOLIO) -> FloatArray:
    """The grid's forward moves i x price_range / buckets, i = -buckets..buckets (-16%..16% in 9 steps)."""
    return np.arange(-params.buckets, params.buckets + 1) * params.price_range / params.buckets


def scenario_table(params: PortfolioParams = DEFAULT_PORTFOLIO) -> list[tuple[int, float, str]]:
    """(scenario_id, move, vol) of the grid: ids from 1, ordered by move then vol in SCENARIO_VOLS order."""
    cells = [(float(m), v) for m in grid_moves(params) for v in SCENARIO_VOLS]
    return [(i, m, v) for i, (m, v) in enumerate(cells, start=1)]


def extended_table(params: PortfolioParams = DEFAULT_PORTFOLIO) -> list[tuple[int, float, str]]:
    """(scenario_id, move, "up") of the tail-risk table, numbered after the grid (28..35 by default)."""
    first = len(SCENARIO_VOLS) * (2 * params.buckets + 1) + 1
    return [(first + i, float(m), "up") for i, m in enumerate(params.extended_moves)]


def shocked_vols(
    sigma: ArrayLike, dte_days: ArrayLike, params: PortfolioParams = DEFAULT_PORTFOLIO
) -> tuple[FloatArray, FloatArray]:
    """(up, down) vols: up = max(s (1 + 0.5 (30/DTE)^p), 0.5), down = max(s (1 - 0.25 (30/DTE)^p), 0).

    p = 0.3 below 30 days, 0.13 from 30 days (short-dated vol moves more). DTE is floored at
    MIN_DTE_DAYS; down is floored at 0 because near expiry the shock exceeds 100% (Black prices sigma = 0
    as intrinsic). A negative or NaN sigma gives NaN for both, rather than the 0.5 floor.
    """
    s, dte = np.broadcast_arrays(np.asarray(sigma, dtype=np.float64), np.asarray(dte_days, dtype=np.float64))
    dte = np.maximum(dte, MIN_DTE_DAYS)
    pivot = params.vega_dte_pivot
    power = np.where(dte < pivot, params.vega_power_short, params.vega_power_long)
    scale = (pivot / dte) ** power
    up = np.maximum(s * (1.0 + params.vol_range_up * scale), params.min_vol_up)
    down = np.maximum(s * (1.0 - params.vol_range_down * scale), 0.0)
    bad = ~(s >= 0)
    return np.where(bad, np.nan, up), np.where(bad, np.nan, down)


def scenario_pnl(
    *,
    is_option: ArrayLike,
    is_inverse: ArrayLike,
    qty: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    tte_years: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    dte_days: ArrayLike,
    params: PortfolioParams = DEFAULT_PORTFOLIO,
) -> tuple[FloatArray, FloatArray]:
    """(grid P&L (n, 27), extended P&L (n, 8)) of n positions, in the conventions of the module docstring.

    Arguments broadcast to one row per position (flattened). Extended P&L is undamped; ``portfolio_margin``
    applies the damping. Invalid inputs (non-positive forward, negative sigma or tte...) give NaN rows.
    """
    (opt, inv), (q, f0, k, t, s, dte), calls = position_rows(
        (is_option, is_inverse), (qty, forward, strike, tte_years, sigma, dte_days), is_call
    )
    grid, ext = scenario_table(params), extended_table(params)
    moves = np.array([m for _, m, _ in grid + ext])
    vol_codes = np.array([SCENARIO_VOLS.index(v) for _, _, v in grid + ext])
    up, down = shocked_vols(s, dte, params)  # NaN on future rows (no sigma), which reprice_pnl ignores
    vols = np.stack([up, s, down], axis=1)[:, vol_codes]
    pnl = reprice_pnl(opt=opt, inv=inv, q=q, f0=f0, k=k, t=t, s=s, calls=calls, moves=moves, vols=vols)
    return pnl[:, : len(grid)], pnl[:, len(grid) :]


MARGIN_COLUMNS = (
    "worst_scenario_id",
    "worst_pnl",
    "grid_loss",
    "extended_loss",
    "extended_addon",
    "initial_margin",
    "maintenance_margin",
)
"""The leading columns of ``portfolio_margin``; the summed P&L per scenario id follows as pnl_<id>."""


def portfolio_margin(
    grid_pnl: ArrayLike,
    extended_pnl: ArrayLike,
    groups: ArrayLike,
    params: PortfolioParams = DEFAULT_PORTFOLIO,
    *,
    n_groups: int | None = None,
) -> pd.DataFrame:
    """Sum the positions' scenario P&L per group (codes from ``pandas.factorize``) and derive IM and MM.

    One row per group code 0..G-1 (index ``group``; ``n_groups`` defaults to max code + 1, negative codes,
    factorize's missing key, raise), columns MARGIN_COLUMNS then pnl_1..pnl_35 (summed P&L, extended
    undamped):

    - grid_loss = max(0, -min grid P&L); extended_loss = max(0, -min extended P&L) x extended_damping;
      extended_addon = max(0, extended_loss - grid_loss) (the contingency component);
      initial_margin = grid_loss + extended_addon; maintenance_margin = mm_factor x initial_margin;
    - worst_scenario_id / worst_pnl: over all scenarios with the extended P&L damped, i.e. the scenario that
      sets the IM (IM = max(0, -worst_pnl)); ties go to the lowest id; when nothing loses, worst_pnl is the
      smallest gain. A group with a NaN P&L has NaN margins and a missing (<NA>) worst_scenario_id.
    """
    import pandas as pd

    grid = np.asarray(grid_pnl, dtype=np.float64)
    ext = np.asarray(extended_pnl, dtype=np.float64)
    codes = np.asarray(groups, dtype=np.int64).reshape(-1)
    if grid.ndim != 2 or ext.ndim != 2 or not grid.shape[0] == ext.shape[0] == codes.size:
        raise ValueError(
            f"shapes do not match: grid {grid.shape}, extended {ext.shape}, groups {codes.shape}"
        )
    codes, n_groups = group_codes(codes, n_groups)
    n_grid = grid.shape[1]
    sums = np.zeros((n_groups, n_grid + ext.shape[1]))
    np.add.at(sums, codes, np.concatenate([grid, ext], axis=1))
    grid_sum, ext_sum = sums[:, :n_grid], sums[:, n_grid:]

    effective = np.concatenate([grid_sum, params.extended_damping * ext_sum], axis=1)
    worst_pnl = effective.min(axis=1)  # NaN when any P&L of the group is NaN
    worst_id = pd.array(effective.argmin(axis=1) + 1, dtype="Int64")
    worst_id[np.isnan(worst_pnl)] = pd.NA
    grid_loss = np.maximum(0.0, -grid_sum.min(axis=1))
    extended_loss = np.maximum(0.0, -ext_sum.min(axis=1, initial=np.inf)) * params.extended_damping
    addon = np.maximum(0.0, extended_loss - grid_loss)
    im = grid_loss + addon
    values = (worst_id, worst_pnl, grid_loss, extended_loss, addon, im, params.mm_factor * im)
    frame = pd.DataFrame(dict(zip(MARGIN_COLUMNS, values, strict=True)))
    pnl = pd.DataFrame(sums, columns=[f"pnl_{i}" for i in range(1, sums.shape[1] + 1)])
    frame = pd.concat([frame, pnl], axis=1)
    frame.index.name = "group"
    return frame
