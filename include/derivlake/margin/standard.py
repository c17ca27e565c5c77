"""Deribit standard margin (domain.md 4.1 and 4.2): futures by size-dependent rate, short options by formula.

Every function broadcasts its arguments with numpy (scalars or arrays) and returns float64 arrays of the
broadcast shape. Invalid inputs (non-positive forward or strike, negative mark) give NaN, not an exception,
as in ``derivlake.pricing``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from derivlake.margin.params import DEFAULT_STANDARD, FutureRates, StandardParams
from derivlake.pricing.black import as_is_call

FloatArray = NDArray[np.float64]


def future_margin_rates(size_base: ArrayLike, rates: FutureRates) -> tuple[FloatArray, FloatArray]:
    """(IM rate, MM rate) as fractions: base + |size in base coin| x slope (long and short alike)."""
    size = np.abs(np.asarray(size_base, dtype=np.float64))
    return rates.im_base + size * rates.slope, rates.mm_base + size * rates.slope


def future_margin(size_base: ArrayLike, rates: FutureRates) -> tuple[FloatArray, FloatArray]:
    """(IM, MM) of a future or perpetual in base coin, |size| x rate.

    For a USDC-margined contract the caller multiplies both by the index price (25 BTC at 100,000 ->
    IM 0.53125 BTC = 53,125 USDC).
    """
    size = np.abs(np.asarray(size_base, dtype=np.float64))
    im_rate, mm_rate = future_margin_rates(size, rates)
    return size * im_rate, size * mm_rate


def short_option_margin(
    forward: ArrayLike,
    strike: ArrayLike,
    mark: ArrayLike,
    is_call: ArrayLike,
    params: StandardParams = DEFAULT_STANDARD,
) -> tuple[FloatArray, FloatArray]:
    """(IM, MM) of one short 1-coin option contract, in coin (``mark`` is the coin price).

    Short call: IM = max(0.15 - OTM/F, 0.10) + mark, MM = 0.075 + mark. Short put: MM = max(0.075,
    0.075 x mark) + mark and IM = max(max(0.15 - OTM/F, 0.10) + mark, MM), so that IM >= MM even for deep
    in-the-money inverse puts. OTM = max(K - F, 0) for calls, max(F - K, 0) for puts. ``is_call`` takes
    booleans or 'call'/'put' ('C'/'P'). Long options need no margin beyond the premium paid.

    Linear (USDC) option: pass ``mark_usd / F`` as the mark and multiply both results by F to get USDC.
    """
    f, k, m, c = np.broadcast_arrays(
        np.asarray(forward, dtype=np.float64),
        np.asarray(strike, dtype=np.float64),
        np.asarray(mark, dtype=np.float64),
        as_is_call(is_call),
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        otm = np.where(c, np.maximum(k - f, 0.0), np.maximum(f - k, 0.0))
        im_base = np.maximum(params.option_im_max - otm / f, params.option_im_floor) + m
    put_mm = np.maximum(params.put_mm_floor, params.put_mm_floor * m) + m
    mm = np.where(c, params.call_mm + m, put_mm)
    im = np.where(c, im_base, np.maximum(im_base, put_mm))
    bad = ~((f > 0) & (k > 0) & (m >= 0) & np.isfinite(f) & np.isfinite(k) & np.isfinite(m))
    return np.where(bad, np.nan, im), np.where(bad, np.nan, mm)
