"""Self-contained HTML of the margin report: accounts first (margin calls on top), then positions."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

TEMPLATES = Path(__file__).with_name("templates")


def _num(value: object, digits: int = 4) -> str:
    """Thousands separators and `digits` significant decimals; blank for unknown (NULL / NaN)."""
    import pandas as pd

    if pd.isna(value):  # None, NaN and pd.NA alike
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    v = float(value)
    return f"{v:,.{digits}f}" if abs(v) < 1e15 else f"{v:.4g}"


def render_margin_html(accounts: pd.DataFrame, positions: pd.DataFrame, as_of: date) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["num"] = _num
    env.filters["pct"] = lambda v: "" if _num(v) == "" else f"{100 * float(v):.1f}%"
    calls_first = accounts.assign(_call=accounts["margin_call"].fillna(False)).sort_values(
        ["_call", "account_id", "currency", "model"], ascending=[False, True, True, True], kind="stable"
    )
    return env.get_template("margin.html.j2").render(
        as_of=as_of,
        accounts=calls_first.to_dict("records"),
        positions=positions.to_dict("records"),
        calls=int(accounts["margin_call"].fillna(False).sum()),
    )


def write_margin_html(accounts: pd.DataFrame, positions: pd.DataFrame, as_of: date, path: Path) -> Path:
    from derivlake.reports.output import write_text

    return write_text(render_margin_html(accounts, positions, as_of), path)
