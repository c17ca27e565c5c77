"""Shared by the scenario margin models (portfolio grid, SPAN): position rows, repricing, group codes.

Repricing conventions (``reprice_pnl``): qty signed (long > 0) in base coin; P&L in the margin currency,
profit positive; inverse future q (1 - F0/F1) coin; linear future q (F1 - F0) USDC; inverse option
q (V(F1, s1)/F1 - V(F0, s)/F0) coin; linear option q (V(F1, s1) - V(F0, s)) USDC, V the section 3 Black
price; NaN rows for a non-positive or non-finite forward (and, through ``black_price``, for an option's
invalid strike, tte or sigma).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from derivlake.pricing.black import as_is_call, black_price

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


def position_rows(
    flags: Sequence[ArrayLike], values: Sequence[ArrayLike], is_call: ArrayLike
) -> tuple[list[BoolArray], list[FloatArray], NDArray]:
    """Broadcast the flags (bool) and values (float64) to one flattened row per position; ``is_call`` is
    broadcast to the rows as given (None allowed on future rows: only option rows are converted)."""
    arrays = np.broadcast_arrays(
        *(np.asarray(a, dtype=bool) for a in flags), *(np.asarray(a, dtype=np.float64) for a in values)
    )
    rows = [a.reshape(-1) for a in arrays]
    calls = np.broadcast_to(np.asarray(is_call), rows[0].shape)
    return rows[: len(flags)], rows[len(flags) :], calls


def reprice_pnl(
    *,
    opt: BoolArray,
    inv: BoolArray,
    q: FloatArray,
    f0: FloatArray,
    k: FloatArray,
    t: FloatArray,
    s: FloatArray,
    calls: NDArray,
    moves: FloatArray,
    vols: FloatArray,
) -> FloatArray:
    """(n, m) P&L of n positions (1-D rows) in m scenarios: the forward moves to F0 (1 + moves[j]) and an
    option's vol to vols[:, j] (shape (n, m); read on option rows only, so NaN on future rows is fine).

    The base value (F0, s) is priced in the same call as the scenarios, so a move 0 / unchanged vol
    scenario is exactly 0.
    """
    f0c = f0[:, None]
    f1 = f0c * (1.0 + np.concatenate([[0.0], np.asarray(moves, dtype=np.float64)]))
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(inv[:, None], -f0c / f1, f1)  # futures: P&L = q (value(F1) - value(F0))
        i = np.flatnonzero(opt)
        if i.size:
            sig1 = np.concatenate([s[i, None], vols[i]], axis=1)
            v = black_price(f1[i], k[i, None], t[i, None], sig1, as_is_call(calls[i])[:, None])
            value[i] = np.where(inv[i, None], v / f1[i], v)
        pnl = q[:, None] * (value[:, 1:] - value[:, :1])
    pnl[~((f0 > 0) & np.isfinite(f0))] = np.nan
    return pnl


def group_codes(
    groups: ArrayLike, n_groups: int | None, *, n_rows: int | None = None, what: str = "group"
) -> tuple[IntArray, int]:
    """(codes, n_groups) of integer group codes (``pandas.factorize``'s); n_groups defaults to max + 1.

    Raises ValueError for a negative code (factorize's missing key), a code >= n_groups, or (when n_rows is
    given) a number of codes other than n_rows.
    """
    codes = np.asarray(groups, dtype=np.int64).reshape(-1)
    if n_rows is not None and codes.size != n_rows:
        raise ValueError(f"{codes.size} {what} codes for {n_rows} rows")
    if (codes < 0).any():
        raise ValueError(f"negative {what} codes (pandas.factorize gives -1 for a missing key)")
    if n_groups is None:
        n_groups = int(codes.max()) + 1 if codes.size else 0
    elif codes.size and codes.max() >= n_groups:
        raise ValueError(f"{what} code {codes.max()} out of range for n_groups={n_groups}")
    return codes, n_groups
