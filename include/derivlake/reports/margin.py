"""End-of-day margin report: every desk account's positions, equity and margin at 08:00 UTC of D.

Positions and cash come from `desk.fills` and `desk.transfers` since inception (sql/margin_positions.sql,
sql/margin_cash.sql); live options are marked from the day's options chain, futures from their last
ticker, and instruments that expired settle at their delivery price (the index TWAP the chain uses).
Three models per account and margin currency (domain.md section 4): Deribit's standard margin, the
portfolio margin of the scenario grid, and SPAN's risk arrays. Everything is computed over whole columns (numpy); a rerun
replaces the date's rows in one transaction and writes the same CSV bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from derivlake.config import LakeSettings
from derivlake.margin import PortfolioParams, SpanParams, StandardParams
from derivlake.reports.chain import BusinessDay

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).with_name("sql")
FLAT = 1e-9
"""A net position smaller than this (in contracts or USD) is closed: float sums of buys and sells."""

OPEN, EXPIRED, NO_MARK, NO_DELIVERY, UNKNOWN = "open", "expired", "no_mark", "no_delivery_price", "unknown"
UNPRICED = (NO_MARK, NO_DELIVERY, UNKNOWN)
ACCOUNT_ORDER = ["account_id", "currency", "model"]
POSITION_ORDER = ["account_id", "currency", "instrument_name"]


class ChainMissingError(RuntimeError):
    """Options are held but the day's options chain, their marks, is not in the lake."""


@dataclass(frozen=True)
class MarginParams:
    standard: StandardParams = field(default_factory=StandardParams)
    portfolio: PortfolioParams = field(default_factory=PortfolioParams)
    span: SpanParams = field(default_factory=SpanParams)


@dataclass(frozen=True)
class MarginResult:
    """What one build produced: the frames as stored and the files written."""

    as_of: date
    accounts: pd.DataFrame
    positions: pd.DataFrame
    files: tuple[Path, ...] = ()

    @property
    def margin_calls(self) -> int:
        """Account x currency pairs in a margin call under either model."""
        calls = self.accounts[self.accounts["margin_call"].fillna(False).astype(bool)]
        return len(calls[["account_id", "currency"]].drop_duplicates())

    def summary(self) -> dict[str, Any]:
        """The asset event's `extra` and the CLI's output: JSON-serialisable."""
        return {
            "as_of_date": self.as_of.isoformat(),
            "accounts": int(self.accounts["account_id"].nunique()),
            "account_rows": len(self.accounts),
            "positions": len(self.positions),
            "unpriced_positions": int(self.positions["status"].isin(UNPRICED).sum()),
            "margin_calls": self.margin_calls,
            "files": [str(p) for p in self.files],
        }


def margin_dir(reports_dir: Path, as_of: date) -> Path:
    return reports_dir / "margin" / as_of.isoformat()


def margin_html_file(reports_dir: Path, as_of: date) -> Path:
    return margin_dir(reports_dir, as_of) / f"margin_{as_of.isoformat()}.html"


def _sql(name: str, day: BusinessDay) -> str:
    from derivlake.reports.output import report_sql

    return report_sql(SQL_DIR / name, day)


# ---------------------------------------------------------------------------------------------------------
# Column computations


def value_positions(raw: pd.DataFrame) -> pd.DataFrame:
    """Status, size in base coin and value in the margin currency of every position, as whole columns.

    Inverse futures hold USD: their size is position / mark coin and their value -position / mark (the
    counterpart of the A / P coin their fills booked as cash). Settled instruments are worth their payoff.
    """
    import numpy as np

    from derivlake.pricing import payoff_coin, payoff_usd

    df = raw.copy()
    pos = df["position"].to_numpy(dtype=float, copy=True)
    pos[np.abs(pos) < FLAT] = 0.0
    df["position"] = pos
    is_option = (df["kind"] == "option").to_numpy()
    inverse = df["is_inverse"].fillna(False).to_numpy(dtype=bool)
    expired = (df["days_to_expiry"].fillna(np.inf) <= 0).to_numpy()
    mark = df["mark_price"].to_numpy(dtype=float)
    settle = df["delivery_price"].to_numpy(dtype=float)
    strike = df["strike"].to_numpy(dtype=float)
    is_call = (df["option_type"] == "call").to_numpy()
    # the price a unit is worth now: the mark while alive, the delivery price (futures) or payoff (options)
    with np.errstate(invalid="ignore", divide="ignore"):
        payoff = np.where(inverse, payoff_coin(settle, strike, is_call), payoff_usd(settle, strike, is_call))
        unit = np.where(expired, np.where(is_option, payoff, settle), mark)
        inverse_future = inverse & ~is_option
        value = np.where(inverse_future, -pos / unit, pos * unit)
        size = np.where(inverse_future, pos / np.where(expired, settle, mark), pos)
    status = np.where(
        df["kind"].isna(),
        UNKNOWN,
        np.where(
            expired,
            np.where(np.isfinite(settle), EXPIRED, NO_DELIVERY),
            np.where(np.isfinite(mark), OPEN, NO_MARK),
        ),
    )
    status = np.where((pos == 0) & (status != UNKNOWN), np.where(expired, EXPIRED, OPEN), status)
    value = np.where(pos == 0, 0.0, value)
    df["status"] = status
    df["size_base"] = np.where(pos == 0, 0.0, size)
    df["value"] = np.where(np.isin(status, UNPRICED), np.nan, value)
    return df


def standard_margin(df: pd.DataFrame, params: StandardParams) -> pd.DataFrame:
    """Deribit standard margin of every open position (domain.md 4.1, 4.2), in its margin currency.

    Futures: |size| x a rate that grows with the size, times the index for USDC-margined ones. Short
    options: the per-contract rule on the coin mark (a linear option's USDC mark over the forward, scaled
    back by the forward) x contracts. Long options need nothing beyond their premium.
    """
    import numpy as np

    from derivlake.margin import future_margin, short_option_margin

    out = df.copy()
    n = len(out)
    im, mm = np.zeros(n), np.zeros(n)
    is_open = (out["status"] == OPEN).to_numpy()
    is_option = (out["kind"] == "option").to_numpy()
    inverse = out["is_inverse"].fillna(False).to_numpy(dtype=bool)
    size = out["size_base"].to_numpy(dtype=float)
    index = out["index_price"].to_numpy(dtype=float)
    futures = is_open & ~is_option
    for base in out.loc[futures, "base_currency"].unique():  # one rate table per currency, not per row
        rows = futures & (out["base_currency"] == base).to_numpy()
        f_im, f_mm = future_margin(size[rows], params.rates_for(base))
        scale = np.where(inverse[rows], 1.0, index[rows])
        im[rows], mm[rows] = f_im * scale, f_mm * scale
    shorts = is_open & is_option & (size < 0)
    forward = out["forward"].to_numpy(dtype=float)[shorts]
    mark = out["mark_price"].to_numpy(dtype=float)[shorts]
    unit = np.where(inverse[shorts], 1.0, forward)  # linear: the rule in coin terms, then x forward
    o_im, o_mm = short_option_margin(
        forward, out["strike"].to_numpy(dtype=float)[shorts], mark / unit,
        (out["option_type"] == "call").to_numpy()[shorts], params,
    )  # fmt: skip
    contracts = -size[shorts]
    im[shorts], mm[shorts] = o_im * unit * contracts, o_mm * unit * contracts
    unpriced = out["status"].isin(UNPRICED).to_numpy()
    out["standard_im"] = np.where(unpriced, np.nan, im)
    out["standard_mm"] = np.where(unpriced, np.nan, mm)
    return out


def position_greeks(df: pd.DataFrame) -> pd.DataFrame:
    """Position greeks in USD: delta per 1 USD move x forward (so that underlyings add up), gamma as the
    USD delta change for a 1% move, vega per vol point, theta per day. Futures are delta one; their other
    greeks are none (margin_positions.sql takes greeks from the chain, for options only)."""
    import numpy as np

    out = df.copy()
    is_open = (out["status"] == OPEN).to_numpy()
    is_option = (out["kind"] == "option").to_numpy()
    size = out["size_base"].to_numpy(dtype=float)
    fwd = out["forward"].to_numpy(dtype=float)
    delta = np.where(is_option, out["delta"].to_numpy(dtype=float), 1.0)
    gamma, vega, theta = (out[g].fillna(0).to_numpy(dtype=float) for g in ("gamma", "vega", "theta"))
    out["delta"] = np.where(is_open, size * delta * fwd, 0.0)
    out["gamma"] = np.where(is_open, size * gamma * fwd * fwd / 100, 0.0)
    out["vega"] = np.where(is_open, size * vega, 0.0)
    out["theta"] = np.where(is_open, size * theta, 0.0)
    return out


GROUP_KEYS = ["account_id", "currency", "underlying"]
"""A scenario model moves each underlying on its own: it margins an account's currency per underlying."""


def _scenario_inputs(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, dict[str, Any]]:
    """The open, priced positions; their group codes (account x currency x underlying) and the groups;
    and the repricing arguments of the scenario models, as columns."""
    import numpy as np

    live = df[(df["status"] == OPEN) & (df["size_base"] != 0)].reset_index(drop=True)
    codes = live.groupby(GROUP_KEYS, sort=True).ngroup().to_numpy()
    groups = live.assign(group=codes).drop_duplicates("group").sort_values("group")[GROUP_KEYS]
    dte = live["days_to_expiry"].to_numpy(dtype=float)
    pricing = {
        "is_option": (live["kind"] == "option").to_numpy(),
        "is_inverse": live["is_inverse"].to_numpy(dtype=bool),
        "qty": live["size_base"].to_numpy(dtype=float),
        "forward": live["forward"].to_numpy(dtype=float),
        "strike": live["strike"].to_numpy(dtype=float),
        "tte_years": np.where(np.isfinite(dte), dte, 0.0) / 365.0,
        "sigma": live["mark_iv"].to_numpy(dtype=float) / 100.0,
        "is_call": (live["option_type"] == "call").to_numpy(),
    }
    return live, codes, groups.reset_index(drop=True), pricing


def _by_currency(groups: pd.DataFrame, per: pd.DataFrame, sums: list[str]) -> pd.DataFrame:
    """Per-underlying figures summed per account x currency; the worst scenario is the largest IM's.

    A NaN (an underlying the model could not reprice: a position without a vol or forward) makes the
    currency's sum NaN, never a 0 that would pass for "no margin needed"."""
    import pandas as pd

    keys = ["account_id", "currency"]
    per = pd.concat([groups, per.reset_index(drop=True)], axis=1)
    per = per.sort_values([*keys, "initial_margin", "underlying"], ascending=[True, True, False, True])
    grouped = per.groupby(keys, sort=True)
    out = grouped[sums].sum().mask(per[sums].isna().groupby([per[k] for k in keys], sort=True).any())
    worst = grouped[["worst_scenario_id", "worst_scenario_pnl"]].first()
    return out.join(worst).reset_index()


def portfolio_by_account(df: pd.DataFrame, params: PortfolioParams) -> pd.DataFrame:
    """Portfolio margin per account and currency (domain.md 4.3), summed over the currency's underlyings."""
    import numpy as np

    from derivlake.margin import portfolio_margin, scenario_pnl

    live, codes, groups, pricing = _scenario_inputs(df)
    dte = live["days_to_expiry"].to_numpy(dtype=float)
    dte_days = np.where(np.isfinite(dte), dte, params.vega_dte_pivot)  # a future's vol is never shocked
    grid, extended = scenario_pnl(**pricing, dte_days=dte_days, params=params)
    per = portfolio_margin(grid, extended, codes, params, n_groups=len(groups))
    per = per.rename(columns={"worst_pnl": "worst_scenario_pnl"})
    sums = ["initial_margin", "maintenance_margin", "grid_loss", "extended_addon"]
    return _by_currency(groups, per, sums)


def span_by_account(df: pd.DataFrame, params: SpanParams) -> pd.DataFrame:
    """SPAN per account and currency (domain.md 4.4), per underlying: the scanning risk of the 16 risk-array
    scenarios plus the calendar-spread charge, floored by the short option minimum, less the net value of
    the options held (floored at 0: long options cover, they are never paid out). SPAN has one
    requirement: it is both the initial and the maintenance margin here."""
    import numpy as np
    import pandas as pd

    from derivlake.margin import (
        intra_spread_charge,
        net_option_value,
        risk_arrays,
        scan_risk,
        short_option_minimum,
        span_requirement,
    )

    live, codes, groups, pricing = _scenario_inputs(df)
    n = len(groups)
    unit = np.where(pricing["is_inverse"], 1.0, pricing["forward"])  # coin-margined: per coin; USDC: x F
    is_option = pricing["is_option"]
    scan, worst = scan_risk(risk_arrays(**pricing, params=params), codes, n_groups=n)
    # each row's delta in base coin: a future's size; an option's size x its coin delta (delta - mark for
    # an inverse option, whose value in coin falls as the coin rises)
    coin_delta = live["delta"].to_numpy(dtype=float) - np.where(
        pricing["is_inverse"], live["mark_price"], 0.0
    )
    delta = np.where(is_option, coin_delta, 1.0)
    expiry = pd.factorize(live["expiration"].fillna(pd.Timestamp.max))[0]
    intra = intra_spread_charge(pricing["qty"] * delta, expiry, codes, unit, params, n_groups=n)
    som = short_option_minimum(is_option, pricing["is_call"], pricing["qty"], unit, codes, params, n_groups=n)
    nov = net_option_value(
        is_option, pricing["qty"], live["mark_price"].to_numpy(dtype=float), codes, n_groups=n
    )
    requirement = np.maximum(span_requirement(scan, intra, np.zeros(n), som, nov), 0.0)
    per = pd.DataFrame({
        "initial_margin": requirement, "maintenance_margin": requirement, "grid_loss": scan,
        "spread_charge": intra, "short_option_minimum": som, "net_option_value": nov,
        "worst_scenario_id": worst, "worst_scenario_pnl": -scan,
    })  # fmt: skip
    sums = [
        "initial_margin",
        "maintenance_margin",
        "grid_loss",
        "spread_charge",
        "short_option_minimum",
        "net_option_value",
    ]
    return _by_currency(groups, per, sums)


def account_table(
    positions: pd.DataFrame, cash: pd.DataFrame, scenario_models: dict[str, pd.DataFrame], day: BusinessDay
) -> pd.DataFrame:
    """One row per account x currency x model: equity, the model's margins and their use of the equity.

    Equity = net deposits - fees + the cash every fill moved + what the positions are worth now; it is
    unknown (NULL) while any of the currency's positions has no price, which `unpriced_positions` counts.
    `scenario_models` maps a model name to its per account x currency frame (portfolio_by_account,
    span_by_account); an account without open positions needs no margin in any of them.
    """
    import numpy as np
    import pandas as pd

    keys = ["account_id", "currency"]
    p = positions.assign(
        unpriced=positions["status"].isin(UNPRICED),
        held=positions["size_base"].ne(0) & positions["status"].isin((OPEN, *UNPRICED)),
    )
    per = p.groupby(keys).agg(
        cash_flows=("cash_flow", "sum"),
        position_value=("value", "sum"),
        positions=("held", "sum"),
        unpriced_positions=("unpriced", "sum"),
        standard_im=("standard_im", "sum"),
        standard_mm=("standard_mm", "sum"),
        delta_total=("delta", "sum"),
        gamma_total=("gamma", "sum"),
        vega_total=("vega", "sum"),
        theta_total=("theta", "sum"),
    )
    base = cash.set_index(keys).join(per, how="outer").reset_index()
    zero = ["deposits", "fees", "cash_flows", "position_value", "standard_im", "standard_mm", "delta_total",
            "gamma_total", "vega_total", "theta_total"]  # fmt: skip
    base[zero] = base[zero].fillna(0.0)
    for col in ("positions", "unpriced_positions"):
        base[col] = base[col].fillna(0).astype("int64")
    equity = base["deposits"] - base["fees"] + base["cash_flows"] + base["position_value"]
    base["equity"] = equity.where(base["unpriced_positions"] == 0)
    models = [
        base.assign(
            model="standard", initial_margin=base["standard_im"], maintenance_margin=base["standard_mm"]
        )
    ]
    for name, frame in scenario_models.items():
        rows = base.merge(frame, on=keys, how="left", indicator=True).assign(model=name)
        # no open position: nothing to margin; a NaN of a margined currency stays unknown
        flat = (rows.pop("_merge") == "left_only").to_numpy()
        for col in ("initial_margin", "maintenance_margin"):
            rows.loc[flat, col] = 0.0
        models.append(rows)
    out = pd.concat(models, ignore_index=True)
    eq = out["equity"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["available_funds"] = eq - out["initial_margin"]
        out["im_utilisation"] = (out["initial_margin"] / eq).where(eq > 0)
        out["mm_utilisation"] = (out["maintenance_margin"] / eq).where(eq > 0)
    known = eq.notna() & out["maintenance_margin"].notna()
    out["margin_call"] = (eq < out["maintenance_margin"]).where(known).astype("boolean")
    out["as_of_date"] = day.as_of
    out["as_of"] = day.snapshot
    out["worst_scenario_id"] = out["worst_scenario_id"].astype("Int32")
    return out.sort_values(ACCOUNT_ORDER, kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------
# Build, store, write


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    from derivlake.lake.schema_sync import ensure_tables as ensure

    ensure(con, SQL_DIR / "margin_tables.sql")


def compute_margin(
    con: duckdb.DuckDBPyConnection, as_of: date, params: MarginParams | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The account and position frames of business day `as_of` (no writes)."""
    from derivlake.reports.chain import ensure_tables as ensure_chain_tables
    from derivlake.reports.output import day_rows, table_columns

    params = params or MarginParams()
    day = BusinessDay(as_of)
    ensure_chain_tables(con)
    ensure_tables(con)
    raw = con.execute(_sql("margin_positions.sql", day)).df()
    # an option by its spec, or by its name when the lake has no spec of it (instruments not drained)
    live_option = (raw["kind"] == "option") & (raw["days_to_expiry"] > 0)
    unspecified_option = raw["kind"].isna() & raw["instrument_name"].str.contains(r"-[CP]$")
    if day_rows(con, "options_chain", as_of) == 0 and (live_option | unspecified_option).any():
        raise ChainMissingError(
            f"the options chain of {as_of} is not in the lake, and it holds the marks of the accounts' "
            f"options: build it first (the eod_options_chain DAG, or `python -m derivlake report chain "
            f"--date {as_of}`)"
        )
    cash = con.execute(_sql("margin_cash.sql", day)).df()
    valued = standard_margin(value_positions(raw), params.standard)  # greeks per contract, as quoted
    scenario_models = {
        "portfolio": portfolio_by_account(valued, params.portfolio),
        "span": span_by_account(valued, params.span),
    }
    positions = position_greeks(valued)  # the positions' greeks in USD
    accounts = account_table(positions, cash, scenario_models, day)
    shown = positions["status"].isin(UNPRICED) | (
        (positions["size_base"] != 0)
        & ~((positions["status"] == EXPIRED) & (positions["days_to_expiry"] < 0))
    )
    positions = positions[shown].assign(as_of_date=as_of)
    positions = positions.sort_values(POSITION_ORDER, kind="stable").reset_index(drop=True)
    return (
        accounts[table_columns(con, "margin_accounts")],
        positions[table_columns(con, "margin_positions")],
    )


def build_margin(
    con_or_settings: duckdb.DuckDBPyConnection | LakeSettings,
    as_of: date,
    *,
    reports_dir: Path | None = None,
    params: MarginParams | None = None,
    html: bool = True,
) -> MarginResult:
    """Build, store and export the margin report of business day `as_of` (idempotent).

    With LakeSettings the lake is opened (and closed) here and files go under its reports_dir; with an
    open connection files go under `reports_dir` if given, else none are written.
    """
    from derivlake.reports.output import replace_day, report_connection, write_csv

    with report_connection(con_or_settings, reports_dir, f"margin {as_of}") as (con, settings, reports_dir):
        accounts, positions = compute_margin(con, as_of, params)
        frames = {"margin_accounts": accounts, "margin_positions": positions}
        replace_day(con, as_of, frames, settings, f"store the margin report of {as_of}")
    files: list[Path] = []
    if reports_dir is not None:
        folder = margin_dir(Path(reports_dir), as_of)
        for table, frame in frames.items():
            files.append(write_csv(frame, folder / f"{table}_{as_of.isoformat()}.csv"))
        if html:
            from derivlake.reports.margin_html import write_margin_html

            files.append(
                write_margin_html(accounts, positions, as_of, margin_html_file(Path(reports_dir), as_of))
            )
    result = MarginResult(as_of, accounts, positions, tuple(files))
    summary = result.summary()
    log.info(
        "margin %s: %d accounts, %d positions (%d unpriced), %d margin calls",
        as_of, summary["accounts"], summary["positions"], summary["unpriced_positions"],
        summary["margin_calls"],
    )  # fmt: skip
    return result
