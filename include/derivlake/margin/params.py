"""Margin parameters of domain.md section 4, as frozen dataclasses whose defaults are the documented values.

Deribit changes its rates from time to time; keeping every constant here (and not in the formulas) lets a
report run with another set of rates without touching the models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class FutureRates:
    """Standard margin rates of a future or perpetual: rate = base + |size in base coin| x slope.

    The slope makes large positions pay a higher rate (liquidating them moves the market more).
    """

    im_base: float
    mm_base: float
    slope: float


BTC_FUTURE_RATES = FutureRates(im_base=0.02, mm_base=0.01, slope=0.00005)
"""2% / 1% + size x 0.005% (domain.md 4.1); ETH uses the same rates."""
SOL_FUTURE_RATES = FutureRates(im_base=0.04, mm_base=0.02, slope=0.000005)
"""SOL_USDC: 4% / 2% + size_SOL x 0.0005%."""


def _default_futures() -> Mapping[str, FutureRates]:
    return MappingProxyType({"BTC": BTC_FUTURE_RATES, "ETH": BTC_FUTURE_RATES, "SOL": SOL_FUTURE_RATES})


@dataclass(frozen=True)
class StandardParams:
    """Deribit standard margin (domain.md 4.1 and 4.2): future rates per base currency, option constants."""

    futures: Mapping[str, FutureRates] = field(default_factory=_default_futures, hash=False)
    """Keyed by base currency (upper case); read-only so that a shared instance cannot be altered."""
    default_futures: FutureRates = BTC_FUTURE_RATES
    """Rates of a base currency missing from ``futures``."""
    option_im_max: float = 0.15
    """Short option IM before the OTM reduction: max(0.15 - OTM/F, 0.10) + mark."""
    option_im_floor: float = 0.10
    call_mm: float = 0.075
    """Short call MM = 0.075 + mark."""
    put_mm_floor: float = 0.075
    """Short put MM = max(0.075, 0.075 x mark) + mark: deep ITM inverse puts can pay more than 1 coin."""

    def rates_for(self, base_currency: str) -> FutureRates:
        """Rates of one base currency ('BTC', 'sol'...), ``default_futures`` when it has none of its own."""
        return self.futures.get(base_currency.strip().upper(), self.default_futures)


@dataclass(frozen=True)
class PortfolioParams:
    """Deribit-style portfolio margin scenario grid (domain.md 4.3)."""

    price_range: float = 0.16
    """Largest grid move; the moves are i x price_range / buckets for i in -buckets..buckets."""
    buckets: int = 4
    vol_range_up: float = 0.5
    vol_range_down: float = 0.25
    min_vol_up: float = 0.5
    """The up-shocked vol is at least this (a fraction: 50%)."""
    vega_power_short: float = 0.3
    """Power p of (30/DTE)^p for DTE < vega_dte_pivot: short-dated vol moves more."""
    vega_power_long: float = 0.13
    vega_dte_pivot: float = 30.0
    mm_factor: float = 0.8
    """MM = mm_factor x IM."""
    extended_moves: tuple[float, ...] = (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
    """Tail-risk moves, repriced with the vol-up shock only."""
    extended_damping: float = 0.03
    """domain.md calls the extended table "damped" without giving the factor, and Deribit does not publish
    it: an extended scenario's P&L is multiplied by this. The assumed 0.03 keeps the table on what it is
    for (Deribit: "large short option positions far out of the money"): for a future, linear or inverse,
    long or short, the damped tail never exceeds the +-16% grid loss (5 x 0.03 = 0.15 < 0.16), while a short
    call 100% out of the money is charged for its +200..500% tail. Configurable."""


@dataclass(frozen=True)
class SpanParams:
    """SPAN risk-array margin (domain.md 4.4) for crypto underlyings.

    domain.md gives the SPAN mechanics (16 scenarios, scanning risk, spread charge, short option minimum,
    net option value) and an S&P futures oracle, not crypto parameters: the values below are our choice for
    crypto, sized like the portfolio grid (the same +-16% price range). Configurable.
    """

    price_scan_range: float = 0.16
    """The full scan move as a fraction of the forward: scenarios move F by 0, +-1/3, +-2/3, +-1 of it."""
    vol_scan_range: float = 0.25
    """Relative vol shift: vol up = sigma (1 + 0.25), vol down = max(sigma (1 - 0.25), 0)."""
    extreme_multiple: float = 2.0
    """The extreme scenarios (15, 16) move F by +-extreme_multiple x price_scan_range, vol unchanged."""
    extreme_fraction: float = 0.35
    """Share of the extreme scenarios' P&L that counts (their risk-array weight)."""
    short_option_minimum: float = 0.01
    """Per short option contract, as a fraction of the forward: 0.01 coin for an inverse (coin-margined)
    option, 0.01 x F USDC for a linear one; charged on max(short calls, short puts)."""
    intra_spread_rate: float = 0.01
    """Calendar-spread charge per unit (1 coin of delta) of spread between the expiries of one underlying, as
    a fraction of the forward: scanning moves every expiry together, this charges for that assumption."""


DEFAULT_STANDARD = StandardParams()
DEFAULT_PORTFOLIO = PortfolioParams()
DEFAULT_SPAN = SpanParams()
