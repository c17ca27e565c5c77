"""Deribit-convention option pricing: undiscounted Black on the forward, greeks and implied volatility."""

from derivlake.pricing.black import (
    Greeks,
    black_price,
    black_price_coin,
    greeks,
    is_call_from_option_type,
    payoff_coin,
    payoff_usd,
)
from derivlake.pricing.conventions import (
    SECONDS_PER_YEAR,
    coin_delta,
    coin_to_usd,
    usd_to_coin,
    year_fraction,
)
from derivlake.pricing.implied_vol import (
    ImpliedVolResult,
    IVReason,
    implied_vol,
    implied_vol_coin,
    reason_codes,
)

__all__ = [
    "SECONDS_PER_YEAR",
    "Greeks",
    "IVReason",
    "ImpliedVolResult",
    "black_price",
    "black_price_coin",
    "coin_delta",
    "coin_to_usd",
    "greeks",
    "implied_vol",
    "implied_vol_coin",
    "is_call_from_option_type",
    "payoff_coin",
    "payoff_usd",
    "reason_codes",
    "usd_to_coin",
    "year_fraction",
]
