"""Margin models of domain.md section 4: standard (Deribit), portfolio (scenario grid) and SPAN (risk arrays)."""

from derivlake.margin.params import (
    DEFAULT_PORTFOLIO,
    DEFAULT_SPAN,
    DEFAULT_STANDARD,
    FutureRates,
    PortfolioParams,
    SpanParams,
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
from derivlake.margin.span import (
    SPAN_SCENARIOS,
    intra_spread_charge,
    net_option_value,
    risk_arrays,
    scan_risk,
    short_option_minimum,
    span_requirement,
    span_scenarios,
)
from derivlake.margin.standard import future_margin, future_margin_rates, short_option_margin

__all__ = [
    "DEFAULT_PORTFOLIO",
    "DEFAULT_SPAN",
    "DEFAULT_STANDARD",
    "MARGIN_COLUMNS",
    "SCENARIO_VOLS",
    "SPAN_SCENARIOS",
    "FutureRates",
    "PortfolioParams",
    "SpanParams",
    "StandardParams",
    "extended_table",
    "future_margin",
    "future_margin_rates",
    "grid_moves",
    "intra_spread_charge",
    "net_option_value",
    "portfolio_margin",
    "risk_arrays",
    "scan_risk",
    "scenario_pnl",
    "scenario_table",
    "shocked_vols",
    "short_option_margin",
    "short_option_minimum",
    "span_requirement",
    "span_scenarios",
]
