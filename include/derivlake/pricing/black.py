"""Black-Scholes on the forward, as Deribit prices and reports its options.

The forward F is the ticker's ``underlying_price`` (the future or synthetic future of the expiry), so the
model is Black-76 with no discounting: Deribit's ``interest_rate`` is 0 and the carry is already in F.
Every function broadcasts its arguments with numpy (scalars or arrays, float64) and returns arrays of the
broadcast shape (0-d for all-scalar input). Invalid inputs give NaN rather than raising, so that one bad
row never aborts a batch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erfcx, ndtr

_INV_SQRT_2PI = 0.3989422804014326779399460599343818684758586311649
_INV_SQRT2 = 0.7071067811865475244008443621048490392848359376887
DAYS_PER_YEAR = 365.0

FloatArray = NDArray[np.float64]


class Greeks(NamedTuple):
    """Deribit-convention greeks, all in USD (also for coin-settled options)."""

    delta: FloatArray
    """dV/dF."""
    gamma: FloatArray
    """d2V/dF2."""
    vega: FloatArray
    """Change in value for +1 volatility point (sigma + 0.01)."""
    theta: FloatArray
    """Value lost per calendar day, floored at minus the option's time value (see ``greeks``)."""
    rho: FloatArray
    """Change in value for +1% rate, with Deribit's spot-style formula."""


def is_call_from_option_type(option_type: ArrayLike) -> NDArray[np.bool_]:
    """Map Deribit's ``option_type`` ('call'/'put') or the name suffix ('C'/'P') to the ``is_call`` flag."""
    codes = np.char.lower(np.char.strip(np.asarray(option_type, dtype=str)))
    is_call = (codes == "call") | (codes == "c")
    is_put = (codes == "put") | (codes == "p")
    if not np.all(is_call | is_put):
        bad = np.unique(codes[~(is_call | is_put)])
        raise ValueError(
            f"unknown option type(s): {bad.tolist()}; expected 'call'/'put' or 'C'/'P' (any case)"
        )
    return is_call


def as_is_call(is_call: ArrayLike) -> NDArray[np.bool_]:
    """Call flags as booleans; strings go through ``is_call_from_option_type`` (bool('put') would be True).

    pandas and DuckDB's ``.df()`` hand strings over as object arrays: only an object array of booleans is
    taken as flags, anything else in one must be an option type (None, NaN or numbers raise ValueError).
    """
    arr = np.asarray(is_call)
    if arr.dtype.kind == "O" and all(isinstance(v, bool | np.bool_) for v in arr.flat):
        return arr.astype(bool)
    return is_call_from_option_type(arr) if arr.dtype.kind in "USO" else arr.astype(bool)


def _inputs(
    F: ArrayLike, K: ArrayLike, T: ArrayLike, sigma: ArrayLike, is_call: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Broadcast to float64 and turn the call flag into the sign w = +1 (call) / -1 (put)."""
    f, k, t, s, c = np.broadcast_arrays(
        np.asarray(F, dtype=np.float64),
        np.asarray(K, dtype=np.float64),
        np.asarray(T, dtype=np.float64),
        np.asarray(sigma, dtype=np.float64),
        as_is_call(is_call),
    )
    return f, k, t, s, np.where(c, 1.0, -1.0)


def _d1(f: FloatArray, k: FloatArray, sd: FloatArray) -> FloatArray:
    return np.log(f / k) / sd + 0.5 * sd


def _normalised_time_value(x: FloatArray, s: FloatArray) -> FloatArray:
    """Time value over sqrt(F K) of any option at x = -|ln(F/K)| and s = sigma sqrt(T) > 0 (1-D arrays).

    Calls and puts share it (parity), so pricing it once keeps deep out-of-the-money prices accurate to
    their last digits: where both N() terms are small, b = e^{-(h^2+t^2)/2}/2 [erfcx(-(h+t)/sqrt2) -
    erfcx(-(h-t)/sqrt2)] (h = x/s, t = s/2) keeps the single exponential out of the cancelling difference.
    """
    h = x / s
    t = 0.5 * s
    out = np.empty_like(h)
    near = h + t > 0.85  # b close to its maximum e^{x/2}: the plain formula is the accurate one there
    i = np.flatnonzero(near)
    if i.size:
        hi, ti, xi = h[i], t[i], x[i]
        b_max = np.exp(0.5 * xi)
        out[i] = ndtr(hi + ti) * b_max - ndtr(hi - ti) / b_max
    i = np.flatnonzero(~near)
    if i.size:
        hi, ti = h[i], t[i]
        out[i] = (
            0.5
            * np.exp(-0.5 * (hi * hi + ti * ti))
            * (erfcx(-_INV_SQRT2 * (hi + ti)) - erfcx(-_INV_SQRT2 * (hi - ti)))
        )
    return np.maximum(out, 0.0)


def _time_value(f: FloatArray, k: FloatArray, t: FloatArray, s: FloatArray) -> FloatArray:
    """Time value (price - intrinsic, the same for a call and a put) of broadcast float64 arrays: 0 at
    T = 0 or sigma = 0, NaN for negative T or sigma and non-positive F or K."""
    shape = f.shape
    f, k, t, s = (a.ravel() for a in (f, k, t, s))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sd = s * np.sqrt(t)
        out = np.zeros(f.shape)
        valid = (f > 0) & (k > 0) & (t >= 0) & (s >= 0) & np.isfinite(f) & np.isfinite(k) & np.isfinite(sd)
        i = np.flatnonzero(valid & (sd > 0))
        if i.size:
            fi, ki = f[i], k[i]
            out[i] = np.sqrt(fi) * np.sqrt(ki) * _normalised_time_value(-np.abs(np.log(fi / ki)), sd[i])
    out[~valid] = np.nan
    return out.reshape(shape)


def black_price(F: ArrayLike, K: ArrayLike, T: ArrayLike, sigma: ArrayLike, is_call: ArrayLike) -> FloatArray:
    """Undiscounted Black price in USD (quote currency) per unit of underlying.

    Priced as intrinsic value plus the (parity-invariant) time value, so that deep out-of-the-money prices
    keep their relative precision instead of being the difference of two nearly equal terms (about 1e-14
    relative; only for sigma sqrt(T) far below 1e-4, minutes to expiry at 1% vol, does the time value
    lose digits, as eps / (sigma sqrt T)). At T = 0 or
    sigma = 0 the price is the intrinsic value (the limit); negative T or sigma and non-positive F or K
    give NaN.
    """
    f, k, t, s, w = _inputs(F, K, T, sigma, is_call)
    return np.asarray(np.maximum(w * (f - k), 0.0) + _time_value(f, k, t, s))


def black_price_coin(
    F: ArrayLike, K: ArrayLike, T: ArrayLike, sigma: ArrayLike, is_call: ArrayLike
) -> FloatArray:
    """Price of an inverse (coin-settled) option in coin: the USD Black price divided by F."""
    return black_price(F, K, T, sigma, is_call) / np.asarray(F, dtype=np.float64)


def payoff_usd(S: ArrayLike, K: ArrayLike, is_call: ArrayLike) -> FloatArray:
    """Expiry payoff of a linear (USDC) option per unit: ``max(S-K, 0)`` or ``max(K-S, 0)``."""
    s = np.asarray(S, dtype=np.float64)
    k = np.asarray(K, dtype=np.float64)
    return np.where(as_is_call(is_call), np.maximum(s - k, 0.0), np.maximum(k - s, 0.0))


def payoff_coin(S: ArrayLike, K: ArrayLike, is_call: ArrayLike) -> FloatArray:
    """Expiry payoff of an inverse option per 1-coin contract, paid in coin: the USD payoff over S.

    S is the delivery price (30-minute TWAP of the index before 08:00 UTC). A put can therefore pay more
    than one coin when S < K/2, which is why inverse puts need coin margin beyond their premium.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        out = payoff_usd(S, K, is_call) / np.asarray(S, dtype=np.float64)
    s = np.asarray(S, dtype=np.float64)
    return np.where(s > 0, out, np.nan)


def greeks(
    F: ArrayLike, K: ArrayLike, T: ArrayLike, sigma: ArrayLike, is_call: ArrayLike, *, cap_theta: bool = True
) -> Greeks:
    """Greeks exactly as Deribit publishes them in the ticker (USD, forward-based Black).

    - delta N(d1) or -N(-d1), gamma phi(d1)/(F sigma sqrt T), vega per vol point F phi(d1) sqrt T / 100;
    - theta per calendar day -F phi(d1) sigma / (2 sqrt T) / 365. Deribit caps it at the option's
      remaining life value, the decay left until expiry: at an unchanged forward an option decays to its
      intrinsic value, so it cannot lose more than its time value. The cap binds in the last hours of
      options near the money or out of it; with ``cap_theta`` (default) theta is therefore
      ``max(theta, -(black_price - intrinsic))``, the same for a call and a put of one strike (parity).
      Captured Deribit tickers show this floor (out of the money, where time value is the whole price);
    - rho per 1% K T N(d2) / 100 (calls), -K T N(-d2) / 100 (puts): Deribit's formula, kept as published.

    T <= 0, sigma <= 0 or non-positive prices give NaN for every greek (they are undefined at expiry).
    """
    f, k, t, s, w = _inputs(F, K, T, sigma, is_call)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sqrt_t = np.sqrt(t)
        sd = s * sqrt_t
        d1 = _d1(f, k, sd)
        d2 = d1 - sd
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
        n_wd1 = ndtr(w * d1)
        n_wd2 = ndtr(w * d2)
        delta = w * n_wd1
        gamma = pdf / (f * sd)
        vega = f * pdf * sqrt_t / 100.0
        theta = -f * pdf * s / (2.0 * sqrt_t) / DAYS_PER_YEAR
        if cap_theta:
            theta = np.maximum(theta, -_time_value(f, k, t, s))
        rho = w * k * t * n_wd2 / 100.0
        bad = ~((f > 0) & (k > 0) & (sd > 0) & np.isfinite(f) & np.isfinite(k) & np.isfinite(sd))
    if bad.any():
        delta, gamma, vega, theta, rho = (np.where(bad, np.nan, g) for g in (delta, gamma, vega, theta, rho))
    return Greeks(delta, gamma, vega, theta, rho)
