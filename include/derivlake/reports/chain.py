"""End-of-day options chain (issue #6): one row per option series alive at 08:00 UTC of the business day.

The business day D is [D-1 08:00, D 08:00) UTC (domain.md section 1). DuckDB does the heavy lifting
(sql/chain_snapshot.sql: last quote per series, the day's trades, index TWAP); numpy recomputes the greeks
and payoffs over whole columns; per-expiry figures (ATM IV, 25-delta risk reversal and butterfly, put/call
ratios, max pain) are computed per expiry, never per series. A rerun replaces the date's rows in one
transaction and writes byte-identical CSV.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from derivlake.config import LakeSettings

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).with_name("sql")
STALE_QUOTES = timedelta(hours=1)
"""A chain whose newest quote is older than this before its snapshot is built with a warning (quotes of a
live market come every few seconds; a whole hour without any is a stopped feed or drain)."""
SNAPSHOT_TIME = time(8, 0)
"""Every Deribit expiry and the end of every business day."""
TWAP_WINDOW = timedelta(minutes=30)
"""Delivery price = time-weighted index over the 30 minutes before the 08:00 expiry."""

# Recomputed vs exchange greeks (domain.md section 3): Deribit rounds greeks to 5 decimals and mark_iv to
# 2 decimals (62.89 for 62.89xx%), so a greek matches when within 1% relative OR an absolute floor that
# covers that rounding; theta's floor is the 0.005 of the oracle.
GREEK_RTOL = 1e-2
GREEK_ATOL: dict[str, float] = {"delta": 5e-4, "gamma": 2e-5, "vega": 5e-3, "theta": 5e-3, "rho": 5e-3}
GREEK_NAMES = ("delta", "gamma", "vega", "theta", "rho")

DELTA_25 = 0.25
"""Wings of the risk reversal and butterfly: the 25-delta call and the -25-delta put."""

CHAIN_ORDER = ["underlying", "expiration", "strike", "option_type"]
EXPIRY_ORDER = ["underlying", "expiration"]


@dataclass(frozen=True)
class BusinessDay:
    """The window of one end-of-day product."""

    as_of: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.as_of - timedelta(days=1), SNAPSHOT_TIME)

    @property
    def snapshot(self) -> datetime:
        return datetime.combine(self.as_of, SNAPSHOT_TIME)

    @property
    def twap_start(self) -> datetime:
        return self.snapshot - TWAP_WINDOW

    def sql_literals(self) -> dict[str, str]:
        """Typed SQL literals for the .sql placeholders (dates are validated objects: no injection)."""
        ts = "TIMESTAMP '{:%Y-%m-%d %H:%M:%S}'".format
        return {
            "d": f"DATE '{self.as_of.isoformat()}'",
            "d_prev": f"DATE '{(self.as_of - timedelta(days=1)).isoformat()}'",
            "day_start": ts(self.start),
            "snapshot": ts(self.snapshot),
            "twap_start": ts(self.twap_start),
        }


@dataclass(frozen=True)
class ChainResult:
    """What one build produced: the frames as written, their row counts and the files."""

    as_of: date
    snapshot: datetime
    chain: pd.DataFrame
    expiries: pd.DataFrame
    csv_path: Path | None = None
    html_path: Path | None = None

    @property
    def series(self) -> int:
        return len(self.chain)

    @property
    def expiry_count(self) -> int:
        return len(self.expiries)

    @property
    def newest_quote(self) -> datetime | None:
        return None if self.chain.empty else self.chain["quote_ts"].max().to_pydatetime()

    def stale_note(self) -> str | None:
        """Why the chain may be out of date: its newest quote is over STALE_QUOTES before the snapshot.

        The gate lets through partitions that are quiet at their log end, which a stopped feed's are too,
        and a date asked by hand is checked against the lake's first quote only: built then, the chain
        holds the last quotes the lake has, hours old, and says so here rather than nowhere."""
        newest = self.newest_quote
        if newest is None or self.snapshot - newest <= STALE_QUOTES:
            return None
        hours = (self.snapshot - newest).total_seconds() / 3600
        return (
            f"the newest quote in the chain of {self.as_of} is {newest:%Y-%m-%d %H:%M:%S}, {hours:.1f} h before "
            "the 08:00 snapshot: the lake holds no quote of the day's last hours (is the feed running, and "
            "drained?); its marks are that old, see quote_age_s"
        )

    def summary(self) -> dict[str, Any]:
        """The asset event's `extra` and the CLI's output: JSON-serialisable."""
        newest = self.newest_quote
        return {
            "as_of_date": self.as_of.isoformat(),
            "series": self.series,
            "expiries": self.expiry_count,
            "newest_quote": newest.isoformat() if newest else None,
            "warning": self.stale_note(),
            "csv": str(self.csv_path) if self.csv_path else None,
            "html": str(self.html_path) if self.html_path else None,
        }


def _sql(name: str, day: BusinessDay, **extra: str) -> str:
    from derivlake.reports.output import report_sql

    return report_sql(SQL_DIR / name, day, **extra)


def _ts_literal(ts: datetime) -> str:
    return f"TIMESTAMP '{ts:%Y-%m-%d %H:%M:%S.%f}'"


def quote_window(con: duckdb.DuckDBPyConnection, day: BusinessDay) -> dict[str, str]:
    """Where the last quotes of the alive series start (chain_quote_cutoff.sql), as SQL literals."""
    (cutoff,) = con.execute(_sql("chain_quote_cutoff.sql", day)).fetchone()
    start = cutoff if cutoff is not None else day.start
    dates = sorted({start.date(), day.as_of})
    return {
        "quote_from": _ts_literal(start),
        "quote_dates": ", ".join(f"DATE '{d.isoformat()}'" for d in dates),
    }


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    from derivlake.lake.schema_sync import ensure_tables as ensure

    ensure(con, SQL_DIR / "chain_tables.sql")


def chain_dir(reports_dir: Path, as_of: date) -> Path:
    return reports_dir / "chain" / as_of.isoformat()


def chain_file(reports_dir: Path, as_of: date, suffix: str) -> Path:
    """Where the chain of `as_of` is written as `suffix` (csv, html)."""
    return chain_dir(reports_dir, as_of) / f"options_chain_{as_of.isoformat()}.{suffix}"


# ---------------------------------------------------------------------------------------------------------
# Column computations (numpy, whole columns at once)


def add_model_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Recomputed greeks, mismatch flag, coin delta and expiry payoff, vectorised over all series."""
    import numpy as np

    from derivlake.pricing import SECONDS_PER_YEAR, coin_delta, greeks, payoff_coin, payoff_usd

    out = df.copy()
    is_call = (out["option_type"] == "call").to_numpy()
    forward = out["forward"].to_numpy(dtype=float)
    strike = out["strike"].to_numpy(dtype=float)
    tte = out["quote_tte_s"].to_numpy(dtype=float) / SECONDS_PER_YEAR
    sigma = out["mark_iv"].to_numpy(dtype=float) / 100.0
    calc = greeks(forward, strike, tte, sigma, is_call)
    mismatch = np.zeros(len(out), dtype=bool)
    comparable = np.zeros(len(out), dtype=bool)
    for name in GREEK_NAMES:
        mine = np.asarray(getattr(calc, name), dtype=float)
        theirs = out[name].to_numpy(dtype=float)
        out[f"calc_{name}"] = mine
        both = np.isfinite(mine) & np.isfinite(theirs)
        comparable |= both
        tol = np.maximum(GREEK_RTOL * np.abs(theirs), GREEK_ATOL[name])
        mismatch |= both & (np.abs(mine - theirs) > tol)
    # NULL where nothing could be compared (expired quote, missing IV): unknown, not "matches"
    out["greeks_mismatch"] = pd_nullable_bool(mismatch, comparable)
    inverse = out["is_inverse"].to_numpy(dtype=bool)
    out["coin_delta"] = np.where(inverse, coin_delta(out["delta"], out["mark_price"]), np.nan)
    s = out["delivery_price"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        payoff = np.where(inverse, payoff_coin(s, strike, is_call), payoff_usd(s, strike, is_call))
    out["payoff"] = np.where(out["is_expiring"].to_numpy(dtype=bool) & np.isfinite(s), payoff, np.nan)
    return out.drop(columns=["quote_tte_s"])


def pd_nullable_bool(values: np.ndarray, known: np.ndarray) -> pd.Series:
    import pandas as pd

    return pd.Series(
        pd.array([bool(v) if k else None for v, k in zip(values, known, strict=True)], "boolean")
    )


def _interp_or_nan(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """Linear interpolation at x, NaN outside the data (no flat extrapolation of a wing)."""
    import numpy as np

    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    if xs.size == 0 or x < xs.min() or x > xs.max():
        return float("nan")
    order = np.argsort(xs, kind="stable")
    return float(np.interp(x, xs[order], ys[order]))


def atm_iv(log_moneyness: np.ndarray, mark_iv: np.ndarray) -> float:
    """Mark IV at log-moneyness 0, linear between the strikes bracketing the forward.

    Call and put of a strike share one mark IV on Deribit; they are averaged per strike. When the forward
    is outside the listed strikes the nearest strike's IV is used (no extrapolation of the smile).
    """
    import numpy as np

    ok = np.isfinite(log_moneyness) & np.isfinite(mark_iv)
    if not ok.any():
        return float("nan")
    k, v = log_moneyness[ok], mark_iv[ok]
    uniq, inv = np.unique(k, return_inverse=True)
    smile = np.bincount(inv, weights=v) / np.bincount(inv)
    if uniq[0] <= 0.0 <= uniq[-1]:
        return float(np.interp(0.0, uniq, smile))
    return float(smile[np.argmin(np.abs(uniq))])


def max_pain(strikes: np.ndarray, is_call: np.ndarray, open_interest: np.ndarray) -> float:
    """The listed strike at which settling minimises the total intrinsic value (USD) paid to holders."""
    import numpy as np

    oi = np.nan_to_num(open_interest)
    if strikes.size == 0 or oi.sum() <= 0:
        return float("nan")
    candidates = np.unique(strikes)
    s = candidates[:, None]
    pay = np.where(is_call[None, :], np.maximum(s - strikes[None, :], 0), np.maximum(strikes[None, :] - s, 0))
    return float(candidates[np.argmin((pay * oi[None, :]).sum(axis=1))])


def expiry_table(chain: pd.DataFrame) -> pd.DataFrame:
    """Per-expiry smile and positioning figures; one pass per (underlying, expiry), vectorised inside."""
    import numpy as np
    import pandas as pd

    rows = []
    for (underlying, expiration), g in chain.groupby(["underlying", "expiration"], sort=True):
        calls = (g["option_type"] == "call").to_numpy()
        live = not bool(g["is_expiring"].iloc[0])
        iv = g["mark_iv"].to_numpy(dtype=float)
        delta = g["delta"].to_numpy(dtype=float)
        atm = atm_iv(g["log_moneyness"].to_numpy(dtype=float), iv) if live else np.nan
        c25 = _interp_or_nan(DELTA_25, delta[calls], iv[calls]) if live else np.nan
        p25 = _interp_or_nan(-DELTA_25, delta[~calls], iv[~calls]) if live else np.nan
        oi = g["open_interest"].to_numpy(dtype=float)
        vol = g["volume"].to_numpy(dtype=float)
        call_oi, put_oi = np.nansum(oi[calls]), np.nansum(oi[~calls])
        call_vol, put_vol = np.nansum(vol[calls]), np.nansum(vol[~calls])
        rows.append(
            {
                "as_of_date": g["as_of_date"].iloc[0],
                "underlying": underlying,
                "expiration": expiration,
                "days_to_expiry": float(g["days_to_expiry"].iloc[0]),
                "series": len(g),
                "forward": float(np.nanmedian(g["forward"])) if g["forward"].notna().any() else np.nan,
                "atm_iv": atm,
                "iv_25d_call": c25,
                "iv_25d_put": p25,
                "rr_25d": c25 - p25,
                "bf_25d": (c25 + p25) / 2 - atm,
                "call_open_interest": call_oi,
                "put_open_interest": put_oi,
                "total_open_interest": call_oi + put_oi,
                "call_volume": call_vol,
                "put_volume": put_vol,
                "put_call_oi_ratio": put_oi / call_oi if call_oi > 0 else np.nan,
                "put_call_volume_ratio": put_vol / call_vol if call_vol > 0 else np.nan,
                "max_pain_strike": max_pain(g["strike"].to_numpy(dtype=float), calls, oi),
                "delivery_price": float(g["delivery_price"].iloc[0]) if not live else np.nan,
            }
        )
    columns = [
        "as_of_date", "underlying", "expiration", "days_to_expiry", "series", "forward", "atm_iv",
        "iv_25d_call", "iv_25d_put", "rr_25d", "bf_25d", "call_open_interest", "put_open_interest",
        "total_open_interest", "call_volume", "put_volume", "put_call_oi_ratio", "put_call_volume_ratio",
        "max_pain_strike", "delivery_price",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------------------------
# Build, store, write


def compute_chain(con: duckdb.DuckDBPyConnection, as_of: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The chain and per-expiry frames for business day `as_of` (no writes)."""
    from derivlake.reports.output import table_columns

    day = BusinessDay(as_of)
    ensure_tables(con)
    raw = con.execute(_sql("chain_snapshot.sql", day, **quote_window(con, day))).df()
    chain = add_model_columns(raw).sort_values(CHAIN_ORDER, kind="stable").reset_index(drop=True)
    chain = chain[table_columns(con, "options_chain")]
    expiries = expiry_table(chain)
    return chain, expiries


def store(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    chain: pd.DataFrame,
    expiries: pd.DataFrame,
    settings: LakeSettings | None = None,
) -> None:
    """Replace the date's chain and expiry rows together (output.replace_day)."""
    from derivlake.reports.output import replace_day

    frames = {"options_chain": chain, "options_chain_expiry": expiries}
    replace_day(con, as_of, frames, settings, f"store the chain of {as_of}")


def build_chain(
    con_or_settings: duckdb.DuckDBPyConnection | LakeSettings,
    as_of: date,
    *,
    reports_dir: Path | None = None,
    write_files: bool = True,
    html: bool = True,
) -> ChainResult:
    """Build, store and export the chain of business day `as_of` (idempotent).

    With LakeSettings the lake is opened (and closed) here and files go under its reports_dir; with an
    open connection files go under `reports_dir` if given, else none are written.
    """
    from derivlake.reports.output import report_connection

    with report_connection(con_or_settings, reports_dir, f"chain {as_of}") as (con, settings, reports_dir):
        chain, expiries = compute_chain(con, as_of)
        store(con, as_of, chain, expiries, settings)
    csv_path = html_path = None
    if write_files and reports_dir is not None:
        from derivlake.reports.output import write_csv

        csv_path = write_csv(chain, chain_file(Path(reports_dir), as_of, "csv"))
        if html:
            from derivlake.reports.html import write_html

            html_path = write_html(chain, expiries, as_of, chain_file(Path(reports_dir), as_of, "html"))
    result = ChainResult(as_of, BusinessDay(as_of).snapshot, chain, expiries, csv_path, html_path)
    log.info("options chain %s: %d series, %d expiries", as_of, result.series, result.expiry_count)
    if note := result.stale_note():
        log.warning("%s", note)
    return result
