"""Deribit unit conventions: year fractions and inverse (coin-settled) price conversions.

Deribit measures time to expiry in seconds over a 365-day year (no day count, no business days), quotes
inverse options in coin and reports their greeks in USD; these helpers keep those conversions in one place.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

SECONDS_PER_YEAR: float = 365.0 * 86400.0
"""Deribit's year: 365 calendar days of 86,400 s (leap years are not special-cased)."""

_UNIT_PER_SECOND = {"s": 1.0, "ms": 1e3, "us": 1e6}


def year_fraction(
    expiry: ArrayLike, now: ArrayLike, unit: Literal["s", "ms", "us"] = "ms"
) -> NDArray[np.float64]:
    """Time to expiry in years, ``(expiry - now) / (365 x 86400 s)``.

    ``unit`` is the unit of both timestamps: Deribit sends milliseconds, the lake stores microseconds.
    The result is negative after expiry on purpose, so that callers (and ``implied_vol``) can flag it.
    """
    scale = _UNIT_PER_SECOND[unit] * SECONDS_PER_YEAR
    diff = np.asarray(expiry, dtype=np.int64) - np.asarray(now, dtype=np.int64)  # exact before scaling
    return diff / scale


def coin_to_usd(price_coin: ArrayLike, underlying_price: ArrayLike) -> NDArray[np.float64]:
    """USD value of a coin-quoted inverse option price: Deribit converts at ``underlying_price`` (F)."""
    return np.asarray(price_coin, dtype=np.float64) * np.asarray(underlying_price, dtype=np.float64)


def usd_to_coin(price_usd: ArrayLike, underlying_price: ArrayLike) -> NDArray[np.float64]:
    """Coin price of an inverse option from its USD value (``usd / F``)."""
    return np.asarray(price_usd, dtype=np.float64) / np.asarray(underlying_price, dtype=np.float64)


def coin_delta(delta: ArrayLike, mark_price_coin: ArrayLike) -> NDArray[np.float64]:
    """Delta of an inverse option in coin terms: ``delta - mark_price(coin)``.

    The premium itself is held in coin, so a coin-margined holder carries an extra short exposure of one
    premium per contract; Deribit reports the USD delta in the ticker and this one in the portfolio.
    """
    return np.asarray(delta, dtype=np.float64) - np.asarray(mark_price_coin, dtype=np.float64)
