"""Vectorised implied volatility of undiscounted Black prices (Deribit's model), with reason codes.

Algorithm: Peter Jäckel's "Let's Be Rational" (2013/2016), vectorised with numpy. Every quote is reduced to
the normalised out-of-the-money time value beta = (price - intrinsic) / sqrt(F K) at x = -|ln(F/K)|; a
four-branch rational-cubic initial guess lands within ~0.1% of the root (a few % at worst, in the lowest
branch), and third-order Householder steps on branch-specific objective functions (1/ln b in the lowest
branch, ln(b_max - b) in the highest) converge in one or two steps. Each step is bracketed: a step that
leaves the bracket becomes a bisection, so an element that misbehaves cannot diverge. Only unconverged
elements keep iterating (the active set is compacted every step), and quotes are processed in blocks
that stay in L2 cache.

Acceptance is by residual, never by step size: an IV is returned only when the Black price at the
volatility before the last step already reproduces the input time value to ``rtol`` (default 1e-10,
relative), plus a few ulps of the price and, far in the tails, the rounding noise of the Black formula
itself; the final Householder step then refines it further. Anything else is NaN with a reason code, so
a batch never raises and never carries a wrong number.

The rational-cubic interpolation and the branch maps follow Jäckel's reference code, distributed under:

    Copyright © 2013-2014 Peter Jäckel.
    Permission to use, copy, modify, and distribute this software is freely granted,
    provided that this notice is preserved.
    WARRANTY DISCLAIMER: The Software is provided "as is" without warranty of any kind, either express or
    implied, including without limitation any implied warranties of condition, uninterrupted use,
    merchantability, fitness for a particular purpose, or non-infringement.
"""

from __future__ import annotations

import sys
from enum import IntEnum
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erfcx, ndtr, ndtri

from derivlake.pricing.black import as_is_call

FloatArray = NDArray[np.float64]

_EPS = sys.float_info.epsilon
_DBL_MIN = sys.float_info.min
_DBL_MAX = sys.float_info.max
_SQRT_DBL_MAX = float(np.sqrt(_DBL_MAX))
_INV_SQRT_2PI = 0.3989422804014326779399460599343818684758586311649
_INV_SQRT2 = 0.7071067811865475244008443621048490392848359376887
_SQRT_2_OVER_PI = 0.7978845608028653558798921198687637369517172623298
_TWO_PI = 6.283185307179586476925286766559005768394338798750
_SQRT_THREE = 1.732050807568877293527446341505872366942805253810
_SQRT_ONE_OVER_THREE = 0.577350269189625764509148780501957455647601751270
_TWO_PI_OVER_SQRT_27 = 1.209199576156145233729385505094770488189377498728
_PI_OVER_SIX = 0.523598775598298873077107230546583814032861566563
_SQRT_PI_OVER_TWO = 1.253314137315500251207882642405522626503493370305
_RC_MIN = -(1.0 - np.sqrt(_EPS))
_RC_MAX = 2.0 / (_EPS * _EPS)
# Smallest normalised time value we try to invert: below it b(x, s) is not representable with full
# relative precision, so the price cannot be told apart from its intrinsic value.
_BETA_FLOOR = 1e-300
# A time value below 1e-12 of the price (thousands of ulps) is mostly the rounding of price - intrinsic:
# the volatility it implies would be noise, so such quotes count as at intrinsic.
_MIN_TIME_VALUE = 1e-12
_BLOCK = 1 << 14

# Objective functions of the Householder iteration, per branch of the initial guess.
_LOWER, _MIDDLE, _UPPER = 0, 1, 2


class IVReason(IntEnum):
    """Why an implied volatility is (or is not) available; ``OK`` is the only code with a number."""

    OK = 0
    BELOW_INTRINSIC = 1
    """Price <= intrinsic, or a time value lost in float64 (< 1e-12 of the price, or < 1e-300 sqrt(FK))."""
    ABOVE_MAX = 2
    """Price >= F (calls) or K (puts), the infinite-volatility limit, or within 1e-12 of it."""
    EXPIRED = 3
    """T <= 0."""
    BAD_INPUT = 4
    """NaN/inf anywhere, F <= 0, K <= 0 or price <= 0 (Deribit sends 0 for a missing bid or ask)."""
    NO_CONVERGENCE = 5
    """The safeguarded iteration did not reach the tolerance (not observed on sane inputs)."""

    @property
    def code(self) -> str:
        """Short lower-case code for tables and logs, e.g. ``'below_intrinsic'``."""
        return self.name.lower()


_REASON_CODES = np.array([r.code for r in IVReason])


def reason_codes(reason: ArrayLike) -> NDArray[np.str_]:
    """String codes ('ok', 'below_intrinsic', ...) for an array of ``IVReason`` values."""
    return _REASON_CODES[np.asarray(reason, dtype=np.intp)]


class ImpliedVolResult(NamedTuple):
    """Implied volatilities (fraction, NaN unless ``reason == OK``) and their ``IVReason`` codes."""

    iv: FloatArray
    reason: NDArray[np.int8]


# --------------------------------------------------------------------------------------------------------
# Normalised Black function of an out-of-the-money call: x = ln(F/K) <= 0, s = sigma sqrt(T) > 0,
# b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2), whose supremum is b_max = e^{x/2}.


def _normalised_black(x: FloatArray, s: FloatArray, b_max: FloatArray) -> FloatArray:
    h = x / s
    t = 0.5 * s
    b = ndtr(h + t) * b_max - ndtr(h - t) / b_max
    return np.maximum(b, 0.0)


def _normalised_vega(x: FloatArray, s: FloatArray) -> FloatArray:
    h = x / s
    t = 0.5 * s
    return _INV_SQRT_2PI * np.exp(-0.5 * (h * h + t * t))


# --------------------------------------------------------------------------------------------------------
# Shape-preserving rational cubic interpolation (Delbourgo & Gregory 1985), as used by Jäckel.


def _rational_cubic(
    x: FloatArray,
    x_l: FloatArray,
    x_r: FloatArray,
    y_l: FloatArray,
    y_r: FloatArray,
    d_l: FloatArray,
    d_r: FloatArray,
    r: FloatArray,
) -> FloatArray:
    h = x_r - x_l
    t = (x - x_l) / h
    omt = 1.0 - t
    t2 = t * t
    omt2 = omt * omt
    cubic = (
        y_r * t2 * t + (r * y_r - h * d_r) * t2 * omt + (r * y_l + h * d_l) * t * omt2 + y_l * omt2 * omt
    ) / (1.0 + (r - 3.0) * t * omt)
    out = np.where(r >= _RC_MAX, y_r * t + y_l * omt, cubic)
    return np.where(np.abs(h) > 0, out, 0.5 * (y_l + y_r))


def _minimum_rational_cubic_parameter(
    d_l: FloatArray, d_r: FloatArray, s: FloatArray, prefer_shape: bool
) -> FloatArray:
    monotonic = (d_l * s >= 0) & (d_r * s >= 0)
    convex = (d_l <= s) & (s <= d_r)
    concave = (d_l >= s) & (s >= d_r)
    fallback = _RC_MAX if prefer_shape else -_DBL_MAX
    r1 = np.where(monotonic, np.where(np.abs(s) >= _DBL_MIN, (d_r + d_l) / s, fallback), -_DBL_MAX)
    d_r_m_d_l = d_r - d_l
    d_r_m_s = d_r - s
    s_m_d_l = s - d_l
    safe = (np.abs(s_m_d_l) >= _DBL_MIN) & (np.abs(d_r_m_s) >= _DBL_MIN)
    r2_val = np.maximum(np.abs(d_r_m_d_l / d_r_m_s), np.abs(d_r_m_d_l / s_m_d_l))
    r2 = np.where(
        convex | concave,
        np.where(safe, r2_val, fallback),
        np.where(monotonic & prefer_shape, _RC_MAX, -_DBL_MAX),
    )
    out = np.maximum(_RC_MIN, np.maximum(r1, r2))
    return np.where(monotonic | convex | concave, out, _RC_MIN)


def _control_parameter(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    r = numerator / denominator
    r = np.where(np.abs(denominator) < _DBL_MIN, np.where(numerator > 0, _RC_MAX, _RC_MIN), r)
    return np.where(np.abs(numerator) < _DBL_MIN, 0.0, r)


def _convex_parameter_left(
    x_l: FloatArray,
    x_r: FloatArray,
    y_l: FloatArray,
    y_r: FloatArray,
    d_l: FloatArray,
    d_r: FloatArray,
    d2_l: FloatArray,
    prefer_shape: bool,
) -> FloatArray:
    h = x_r - x_l
    slope = (y_r - y_l) / h
    r = _control_parameter(0.5 * h * d2_l + (d_r - d_l), slope - d_l)
    return np.maximum(r, _minimum_rational_cubic_parameter(d_l, d_r, slope, prefer_shape))


def _convex_parameter_right(
    x_l: FloatArray,
    x_r: FloatArray,
    y_l: FloatArray,
    y_r: FloatArray,
    d_l: FloatArray,
    d_r: FloatArray,
    d2_r: FloatArray,
    prefer_shape: bool,
) -> FloatArray:
    h = x_r - x_l
    slope = (y_r - y_l) / h
    r = _control_parameter(0.5 * h * d2_r + (d_r - d_l), d_r - slope)
    return np.maximum(r, _minimum_rational_cubic_parameter(d_l, d_r, slope, prefer_shape))


# --------------------------------------------------------------------------------------------------------
# Initial guess: four branches split at s_l < s_c < s_h around the inflection point s_c = sqrt(2|x|).


def _guess_lower(x: FloatArray, beta: FloatArray, s_l: FloatArray, b_l: FloatArray) -> FloatArray:
    """Lowest branch (beta < b_l): interpolate in Jäckel's f_lower map, in which b(s) is almost linear."""
    ax = np.abs(x)
    z = _SQRT_ONE_OVER_THREE * ax / s_l
    y = z * z
    s2 = s_l * s_l
    big_phi = ndtr(-z)
    phi = _INV_SQRT_2PI * np.exp(-0.5 * y)
    fpp = (
        _PI_OVER_SIX
        * y
        / (s2 * s_l)
        * big_phi
        * (8.0 * _SQRT_THREE * s_l * ax + (3.0 * s2 * (s2 - 8.0) - 8.0 * x * x) * big_phi / phi)
        * np.exp(2.0 * y + 0.25 * s2)
    )
    phi2 = big_phi * big_phi
    fp = _TWO_PI * y * phi2 * np.exp(y + 0.125 * s2)
    f_l = _TWO_PI_OVER_SQRT_27 * ax * (phi2 * big_phi)
    zero = np.zeros_like(x)
    one = np.ones_like(x)
    r = _convex_parameter_right(zero, b_l, zero, f_l, one, fp, fpp, True)
    f = _rational_cubic(beta, zero, b_l, zero, f_l, one, fp, r)
    t = beta / b_l
    f = np.where(f > 0, f, (f_l * t + b_l * (1.0 - t)) * t)  # quadratic fallback for extreme |x|
    return np.abs(x / (_SQRT_THREE * ndtri(np.cbrt(f / (_TWO_PI_OVER_SQRT_27 * ax)))))


def _guess_upper(
    x: FloatArray, beta: FloatArray, b_max: FloatArray, s_h: FloatArray, b_h: FloatArray
) -> FloatArray:
    """Highest branch (beta > b_h): interpolate in the f_upper map N(-s/2), inverted by ndtri."""
    f_h = ndtr(-0.5 * s_h)
    w = (x / s_h) ** 2
    fp = -0.5 * np.exp(0.5 * w)
    fpp = _SQRT_PI_OVER_TWO * np.exp(w + 0.125 * s_h * s_h) * w / s_h
    zero = np.zeros_like(x)
    half = np.full_like(x, -0.5)
    r = _convex_parameter_left(b_h, b_max, f_h, zero, fp, half, fpp, True)
    f = _rational_cubic(beta, b_h, b_max, f_h, zero, fp, half, r)
    f = np.where((fpp > -_SQRT_DBL_MAX) & (fpp < _SQRT_DBL_MAX), f, -1.0)
    h = b_max - b_h
    t = (beta - b_h) / h
    f = np.where(f > 0, f, (f_h * (1.0 - t) + 0.5 * h * t) * (1.0 - t))  # quadratic fallback
    return -2.0 * ndtri(f)


def _initial_guess(
    x: FloatArray, beta: FloatArray, b_max: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.int8]]:
    """Guess s, its bracket [lo, hi] and the objective to iterate on, branch by branch."""
    n = x.size
    s = np.empty(n)
    lo = np.empty(n)
    hi = np.empty(n)
    kind = np.empty(n, dtype=np.int8)
    s_c = np.sqrt(-2.0 * x) + 1e-300  # > 0 even at the money, where x/s_c must be 0, not 0/0
    # At the inflection point h + t = 0 and h - t = -s_c, which saves one N() and the vega's exp.
    b_c = 0.5 * b_max - ndtr(-s_c) / b_max
    v_c = _INV_SQRT_2PI * b_max
    low = beta < b_c

    i = np.flatnonzero(low)
    if i.size:
        xi, bi, bmi, sci, bci, vci = x[i], beta[i], b_max[i], s_c[i], b_c[i], v_c[i]
        s_l = sci - bci / vci
        b_l = _normalised_black(xi, s_l, bmi)
        ll = bi < b_l
        j = np.flatnonzero(ll)
        if j.size:
            idx = i[j]
            s[idx] = _guess_lower(xi[j], bi[j], s_l[j], b_l[j])
            lo[idx] = 0.0
            hi[idx] = s_l[j]
            kind[idx] = _LOWER
        j = np.flatnonzero(~ll)
        if j.size:
            idx = i[j]
            v_l = _normalised_vega(xi[j], s_l[j])
            d_l, d_r = 1.0 / v_l, 1.0 / vci[j]
            r = _convex_parameter_right(b_l[j], bci[j], s_l[j], sci[j], d_l, d_r, np.zeros(j.size), False)
            s[idx] = _rational_cubic(bi[j], b_l[j], bci[j], s_l[j], sci[j], d_l, d_r, r)
            lo[idx] = s_l[j]
            hi[idx] = sci[j]
            kind[idx] = _MIDDLE

    i = np.flatnonzero(~low)
    if i.size:
        xi, bi, bmi, sci, bci, vci = x[i], beta[i], b_max[i], s_c[i], b_c[i], v_c[i]
        s_h = np.where(vci > _DBL_MIN, sci + (bmi - bci) / vci, sci)
        b_h = _normalised_black(xi, s_h, bmi)
        hm = bi <= b_h
        j = np.flatnonzero(hm)
        if j.size:
            idx = i[j]
            v_h = _normalised_vega(xi[j], s_h[j])
            d_l, d_r = 1.0 / vci[j], 1.0 / v_h
            r = _convex_parameter_left(bci[j], b_h[j], sci[j], s_h[j], d_l, d_r, np.zeros(j.size), False)
            s[idx] = _rational_cubic(bi[j], bci[j], b_h[j], sci[j], s_h[j], d_l, d_r, r)
            lo[idx] = sci[j]
            hi[idx] = s_h[j]
            kind[idx] = _MIDDLE
        j = np.flatnonzero(~hm)
        if j.size:
            idx = i[j]
            s[idx] = _guess_upper(xi[j], bi[j], bmi[j], s_h[j], b_h[j])
            lo[idx] = s_h[j]
            hi[idx] = np.inf
            kind[idx] = np.where(bi[j] > 0.5 * bmi[j], _UPPER, _MIDDLE)
    return s, lo, hi, kind


# --------------------------------------------------------------------------------------------------------
# Safeguarded third-order Householder iteration, on the active (unconverged) elements only.


def _householder(
    kind: int,
    x: FloatArray,
    beta: FloatArray,
    b_max: FloatArray,
    s: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    tol: FloatArray,
    max_iter: int,
) -> FloatArray:
    """Solve b(x, s) = beta; returns s, NaN where the residual never got within ``tol``."""
    out = np.full(s.size, np.nan)
    active = np.arange(s.size)
    ln_beta = np.log(beta) if kind == _LOWER else None
    for _ in range(max_iter):
        h = x / s
        t = 0.5 * s
        if kind == _LOWER:
            # Deep out of the money: b = e^{-(h^2+t^2)/2}/2 [erfcx(-(h+t)/sqrt2) - erfcx(-(h-t)/sqrt2)] keeps one
            # exponential outside the difference, so its rounding is not amplified by the cancellation.
            q = 0.5 * (h * h + t * t)
            e = 0.5 * np.exp(-q)
            y1 = erfcx(-_INV_SQRT2 * (h + t))
            y2 = erfcx(-_INV_SQRT2 * (h - t))
            b = np.maximum(e * (y1 - y2), 0.0)
            bp = _SQRT_2_OVER_PI * e
            noise = 4.0 * _EPS * (b * (1.0 + q) + e * (y1 + y2))
        else:
            hpt = h + t
            hmt = h - t
            term1 = ndtr(hpt) * b_max
            term2 = ndtr(hmt) / b_max
            b = np.maximum(term1 - term2, 0.0)
            bp = _INV_SQRT_2PI * np.exp(-0.5 * (h * h + t * t))
            # Far in the tails N(z) carries the relative error of exp(-z^2/2), about eps z^2/2, and b is
            # a difference of two such terms: below that noise floor a residual cannot be verified.
            noise = 4.0 * _EPS * (term1 * (1.0 + 0.5 * hpt * hpt) + term2 * (1.0 + 0.5 * hmt * hmt))
        resid = b - beta
        converged = np.abs(resid) <= tol + noise
        converged &= np.isfinite(s)
        np.minimum(hi, s, out=hi, where=resid > 0)
        np.maximum(lo, s, out=lo, where=resid < 0)
        hos = h / s
        b_halley = h * hos - 0.25 * s  # b''/b'
        b_hh3 = b_halley * b_halley - 3.0 * hos * hos - 0.25  # b'''/b'
        if kind == _MIDDLE:  # g = b - beta
            newton = -resid / bp
            halley = b_halley
            hh3 = b_hh3
        elif kind == _LOWER:  # g = 1/ln(b) - 1/ln(beta): nearly linear where b is tiny
            ln_b = np.log(b)
            bpob = bp / b
            inv_ln_b = 1.0 / ln_b
            newton = (ln_beta - ln_b) * ln_b / ln_beta / bpob
            halley = b_halley - bpob * (1.0 + 2.0 * inv_ln_b)
            hh3 = (
                b_hh3
                + 2.0 * bpob * bpob * (1.0 + 3.0 * inv_ln_b * (1.0 + inv_ln_b))
                - 3.0 * b_halley * bpob * (1.0 + 2.0 * inv_ln_b)
            )
        else:  # g = ln((b_max - beta) / (b_max - b)): tames the flat top near b_max
            b_max_minus_b = b_max - b
            gp = bp / b_max_minus_b
            newton = -np.log((b_max - beta) / b_max_minus_b) / gp
            halley = b_halley + gp
            hh3 = b_hh3 + gp * (2.0 * gp + 3.0 * b_halley)
        ds = newton * (1.0 + 0.5 * halley * newton) / (1.0 + newton * (halley + hh3 * newton / 6.0))
        ds = np.maximum(ds, -0.5 * s)
        s_new = s + ds
        inside = (s_new > lo) & (s_new < hi)  # False for NaN steps (underflow, zero vega)
        if converged.any():
            # The residual at s is already within tolerance; the step from there only refines it.
            done = np.flatnonzero(converged)
            out[active[done]] = np.where(inside[done], s_new[done], s[done])
            keep = np.flatnonzero(~converged)
            if keep.size == 0:
                return out
            active, x, beta, b_max, tol, lo, hi = (a[keep] for a in (active, x, beta, b_max, tol, lo, hi))
            s, s_new, inside = s[keep], s_new[keep], inside[keep]
            if ln_beta is not None:
                ln_beta = ln_beta[keep]
        # Outside the bracket: bisect (geometrically while the bracket is wide or unbounded above).
        if not inside.all():
            bisect = np.where(
                np.isfinite(hi),
                np.where(hi > 4.0 * lo, np.sqrt(np.maximum(lo, 1e-3 * hi) * hi), 0.5 * (lo + hi)),
                2.0 * np.maximum(s, lo),
            )
            s_new = np.where(inside, s_new, bisect)
        s = s_new
    return out


def _solve_normalised(x: FloatArray, beta: FloatArray, tol: FloatArray, max_iter: int) -> FloatArray:
    """s = sigma sqrt(T) with b(x, s) = beta for x <= 0 and 0 < beta < e^{x/2}; NaN if not converged."""
    b_max = np.exp(0.5 * x)
    s0, lo, hi, kind = _initial_guess(x, beta, b_max)
    # Branch brackets come from b evaluated a little differently than in the iteration: widen them by
    # far more than that rounding so that the root is never excluded.
    lo *= 1.0 - 1e-7
    hi *= 1.0 + 1e-7
    # The guess maps can overflow for extreme inputs; start those from their bracket instead.
    wild = ~(np.isfinite(s0) & (s0 > 0))
    if wild.any():
        s0[wild] = np.where(np.isfinite(hi[wild]), 0.5 * (lo[wild] + hi[wild]), 2.0 * lo[wild] + 1.0)
    s = np.full(x.size, np.nan)
    for k in (_LOWER, _MIDDLE, _UPPER):
        i = np.flatnonzero(kind == k)
        if i.size:
            s[i] = _householder(k, x[i], beta[i], b_max[i], s0[i], lo[i], hi[i], tol[i], max_iter)
    return s


# --------------------------------------------------------------------------------------------------------
# Public API


def implied_vol(
    price: ArrayLike,
    F: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    is_call: ArrayLike,
    *,
    rtol: float = 1e-10,
    max_iter: int = 60,
) -> ImpliedVolResult:
    """Implied volatility of undiscounted Black prices in USD (quote currency), vectorised.

    Arguments broadcast together; ``is_call`` may be booleans or 'call'/'put'/'C'/'P'. Returns ``ImpliedVolResult(iv, reason)``: ``iv`` as a fraction
    (0.6289 = 62.89%, Deribit's ``*_iv`` fields are percent), NaN wherever ``reason != IVReason.OK``.
    The root is accepted when the Black price reproduces ``price - intrinsic`` to ``rtol`` relative, plus
    a few ulps of ``price`` (the rounding of the intrinsic subtraction for in-the-money quotes).
    """
    p, f, k, t, c = np.broadcast_arrays(
        np.asarray(price, dtype=np.float64),
        np.asarray(F, dtype=np.float64),
        np.asarray(K, dtype=np.float64),
        np.asarray(T, dtype=np.float64),
        as_is_call(is_call),
    )
    shape = p.shape
    p, f, k, t, c = (a.ravel() for a in (p, f, k, t, c))
    iv = np.full(p.size, np.nan)
    reason = np.zeros(p.size, dtype=np.int8)
    # Blocks that fit in L2 cache: the solver is a long chain of elementwise numpy operations, and on
    # cache-resident operands each of them runs several times faster than on arrays streamed from RAM.
    with np.errstate(all="ignore"):
        for lo in range(0, p.size, _BLOCK):
            hi = min(lo + _BLOCK, p.size)
            _implied_vol_block(
                p[lo:hi], f[lo:hi], k[lo:hi], t[lo:hi], c[lo:hi], rtol, max_iter, iv[lo:hi], reason[lo:hi]
            )
    return ImpliedVolResult(iv.reshape(shape), reason.reshape(shape))


def _implied_vol_block(
    p: FloatArray,
    f: FloatArray,
    k: FloatArray,
    t: FloatArray,
    c: NDArray[np.bool_],
    rtol: float,
    max_iter: int,
    iv: FloatArray,
    reason: NDArray[np.int8],
) -> None:
    """Classify one block of quotes and solve the valid ones, writing into the ``iv`` and ``reason`` views."""
    intrinsic = np.where(c, np.maximum(f - k, 0.0), np.maximum(k - f, 0.0))
    time_value = p - intrinsic
    bad = ~(np.isfinite(p) & np.isfinite(f) & np.isfinite(k) & np.isfinite(t) & (f > 0) & (k > 0) & (p > 0))
    expired = ~bad & (t <= 0)
    # Within 1e-12 of the bound the distance to it is float64 rounding: the volatility is unbounded.
    above = ~bad & ~expired & (p >= np.where(c, f, k) * (1.0 - _MIN_TIME_VALUE))
    sqrt_fk = np.sqrt(f) * np.sqrt(k)
    below = (
        ~bad
        & ~expired
        & ~above
        & ((time_value <= _MIN_TIME_VALUE * p) | (time_value < _BETA_FLOOR * sqrt_fk) | ~(intrinsic < p))
    )
    reason[bad] = IVReason.BAD_INPUT
    reason[expired] = IVReason.EXPIRED
    reason[above] = IVReason.ABOVE_MAX
    reason[below] = IVReason.BELOW_INTRINSIC

    i = np.flatnonzero(reason == IVReason.OK)
    if i.size:
        x = -np.abs(np.log(f[i] / k[i]))
        scale = sqrt_fk[i]
        beta = time_value[i] / scale
        tol = rtol * beta + 8.0 * _EPS * p[i] / scale
        s = _solve_normalised(x, beta, tol, max_iter)
        sigma = s / np.sqrt(t[i])
        ok = np.isfinite(sigma) & (sigma > 0)
        iv[i[ok]] = sigma[ok]
        reason[i[~ok]] = IVReason.NO_CONVERGENCE


def implied_vol_coin(
    price_coin: ArrayLike,
    F: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    is_call: ArrayLike,
    *,
    rtol: float = 1e-10,
    max_iter: int = 60,
) -> ImpliedVolResult:
    """``implied_vol`` for inverse options quoted in coin: Deribit converts at F (``price_coin * F``)."""
    usd = np.asarray(price_coin, dtype=np.float64) * np.asarray(F, dtype=np.float64)
    return implied_vol(usd, F, K, T, is_call, rtol=rtol, max_iter=max_iter)
