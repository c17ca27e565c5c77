"""Market model of the simulator: index random walks with jumps, a forward curve and a smile per expiry.

The smile is a plain function of (log-moneyness, time) so a test can recover the IV from a simulated mark
and compare it with the vol that generated it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

YEAR_S = 365.0 * 86400.0


@dataclass(frozen=True)
class MarketSpec:
    """One underlying market: `BTC` (inverse), `SOL_USDC` (linear)."""

    market: str  # name prefix of its instruments
    base: str
    index_name: str
    linear: bool
    spot0: float
    vol: float  # annualised vol of the index walk
    atm_vol: float  # smile level at long maturities
    skew: float  # slope of vol in standardised moneyness
    curvature: float
    basis: float  # annualised futures basis (contango)
    strike_step: float  # strike grid
    option_tick: float
    option_min_amount: float
    future_tick: float
    future_contract: float  # contract size (USD for inverse futures)
    has_futures: bool


MARKETS: tuple[MarketSpec, ...] = (
    MarketSpec(
        "BTC",
        "BTC",
        "btc_usd",
        False,
        60000.0,
        0.55,
        0.55,
        -0.04,
        0.02,
        0.06,
        1000.0,
        0.0005,
        0.1,
        0.5,
        10.0,
        True,
    ),
    MarketSpec(
        "ETH",
        "ETH",
        "eth_usd",
        False,
        3000.0,
        0.70,
        0.68,
        -0.05,
        0.025,
        0.07,
        50.0,
        0.0005,
        1.0,
        0.05,
        1.0,
        True,
    ),
    MarketSpec(
        "SOL_USDC",
        "SOL",
        "sol_usdc",
        True,
        150.0,
        0.85,
        0.80,
        -0.03,
        0.03,
        0.05,
        2.5,
        0.01,
        1.0,
        0.01,
        1.0,
        False,
    ),
)


def smile_vol(spec: MarketSpec, log_moneyness: np.ndarray | float, t_years: np.ndarray | float) -> np.ndarray:
    """Annualised vol for ln(K/F) and time to expiry (years): short expiries a bit richer, skewed, convex."""
    t = np.maximum(np.asarray(t_years, dtype=float), 1.0 / 365.0 / 24.0)
    z = np.asarray(log_moneyness, dtype=float) / np.sqrt(t)
    atm = spec.atm_vol * (1.0 + 0.15 * np.exp(-t * 12.0))
    return np.clip(atm + spec.skew * z + spec.curvature * z * z, 0.05, 5.0)


def forward(spec: MarketSpec, spot: np.ndarray | float, t_years: np.ndarray | float) -> np.ndarray:
    return np.asarray(spot) * np.exp(spec.basis * np.asarray(t_years))


def index_path(
    rng: np.random.Generator, spec: MarketSpec, start_price: float, n: int, dt_s: float
) -> np.ndarray:
    """`n` successive index prices after `start_price`: a GBM with rare jumps (about two a day)."""
    dt = dt_s / YEAR_S
    ret = rng.standard_normal(n) * spec.vol * np.sqrt(dt) - 0.5 * spec.vol**2 * dt
    jumps = rng.random(n) < 2.0 * dt_s / 86400.0
    ret = ret + np.where(jumps, rng.standard_normal(n) * 0.01, 0.0)
    return start_price * np.exp(np.cumsum(ret))


try:  # the project's pricing engine (written in parallel); same conventions as domain.md section 3
    from derivlake.pricing import black_price as _engine_price
    from derivlake.pricing import greeks as _engine_greeks
except ImportError:  # pragma: no cover - only while the engine is not there yet
    _engine_price = None
    _engine_greeks = None


def _fallback(F, K, T, sigma, is_call):
    from scipy.special import ndtr

    sq = sigma * np.sqrt(T)
    d1 = (np.log(F / K) + 0.5 * sigma * sigma * T) / sq
    d2 = d1 - sq
    pdf = np.exp(-0.5 * d1 * d1) / np.sqrt(2 * np.pi)
    call = F * ndtr(d1) - K * ndtr(d2)
    price = np.where(is_call, call, call - F + K)
    delta = np.where(is_call, ndtr(d1), ndtr(d1) - 1.0)
    gamma = pdf / (F * sq)
    vega = F * pdf * np.sqrt(T) / 100.0
    theta = -F * pdf * sigma / (2 * np.sqrt(T)) / 365.0
    rho = np.where(is_call, K * T * ndtr(d2), -K * T * ndtr(-d2)) / 100.0
    return price, delta, gamma, vega, theta, rho


def price_and_greeks(
    F: np.ndarray, K: np.ndarray, T: np.ndarray, sigma: np.ndarray, is_call: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Undiscounted Black price (USD) and Deribit greeks, vectorised; the engine when available."""
    if _engine_price is not None and _engine_greeks is not None:
        price = np.asarray(_engine_price(F, K, T, sigma, is_call), dtype=float)
        g = _engine_greeks(F, K, T, sigma, is_call)
        return price, *(np.asarray(x, dtype=float) for x in (g.delta, g.gamma, g.vega, g.theta, g.rho))
    return _fallback(F, K, T, sigma, is_call)
