"""Margin models of domain.md section 4: standard (Deribit) and portfolio (scenario grid)."""

from derivlake.margin.params import (
    DEFAULT_PORTFOLIO,
    DEFAULT_STANDARD,
    FutureRates,
    PortfolioParams,
    StandardParams,
)
from derivlake.margin.portfolio import (
    MARGIN_COLUMNS,
    SCENARIO_VOLS,
    extended_table,
    grid_moves,
    portfolio_margin,
    scenario_pnl,
    scenario_table,
    shocked_vols,
)
from derivlake.margin.standard import future_margin, future_margin_rates, short_option_margin

__all__ = [
    "DEFAULT_PORTFOLIO",
    "DEFAULT_STANDARD",
    "MARGIN_COLUMNS",
    "SCENARIO_VOLS",
    "FutureRates",
    "PortfolioParams",
    "StandardParams",
    "extended_table",
    "future_margin",
    "future_margin_rates",
    "grid_moves",
    "portfolio_margin",
    "scenario_pnl",
    "scenario_table",
    "shocked_vols",
    "short_option_margin",
]
