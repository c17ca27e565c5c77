"""Self-contained HTML report of the options chain: inline SVG drawn here, no JS, no network.

Per underlying: the smile of each live expiry (mark IV against log-moneyness, bid/ask IV as a band), the
ATM term structure and open interest by strike. SVG is generated in Python so the file opens anywhere,
offline, and renders identically in a headless browser for the screenshot test.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from datetime import date
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2
    import pandas as pd

TEMPLATES = Path(__file__).with_name("templates")
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
WIDTH, HEIGHT = 640, 340
MARGIN = {"left": 60, "right": 150, "top": 30, "bottom": 45}


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1-2-5 steps)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float, step: float) -> str:
    """Tick label with just enough decimals for the tick step (strikes as plain thousands)."""
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 2
    return f"{v:,.{decimals}f}"


def _step(ticks: list[float]) -> float:
    return ticks[1] - ticks[0] if len(ticks) > 1 else 1.0


@dataclass
class Chart:
    """A minimal SVG plot: linear axes, lines, points, bands and bars."""

    title: str
    x_label: str
    y_label: str
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    parts: list[str] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        pad_x = (x1 - x0) * 0.03 or 1.0
        pad_y = (y1 - y0) * 0.08 or 1.0
        self.x_range, self.y_range = (x0 - pad_x, x1 + pad_x), (y0 - pad_y, y1 + pad_y)

    def px(self, x: float) -> float:
        lo, hi = self.x_range
        return MARGIN["left"] + (x - lo) / (hi - lo) * (WIDTH - MARGIN["left"] - MARGIN["right"])

    def py(self, y: float) -> float:
        lo, hi = self.y_range
        return HEIGHT - MARGIN["bottom"] - (y - lo) / (hi - lo) * (HEIGHT - MARGIN["top"] - MARGIN["bottom"])

    def line(self, xs: list[float], ys: list[float], color: str, label: str | None = None) -> None:
        pts = " ".join(f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in zip(xs, ys, strict=True))
        self.parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        self.parts.extend(
            f'<circle cx="{self.px(x):.1f}" cy="{self.py(y):.1f}" r="2.5" fill="{color}"/>'
            for x, y in zip(xs, ys, strict=True)
        )
        if label:
            self.legend.append((label, color))

    def band(self, xs: list[float], lo: list[float], hi: list[float], color: str) -> None:
        if len(xs) < 2:
            return
        upper = [f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in zip(xs, hi, strict=True)]
        lower = [
            f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in zip(reversed(xs), reversed(lo), strict=True)
        ]
        self.parts.append(f'<polygon points="{" ".join(upper + lower)}" fill="{color}" fill-opacity="0.15"/>')

    def bars(
        self, xs: list[float], ys: list[float], width: float, offset: float, color: str, label: str
    ) -> None:
        base = self.py(max(self.y_range[0], 0.0))
        for x, y in zip(xs, ys, strict=True):
            left, right = self.px(x + offset - width / 2), self.px(x + offset + width / 2)
            top = self.py(y)
            self.parts.append(
                f'<rect x="{left:.1f}" y="{top:.1f}" width="{max(right - left, 1):.1f}" '
                f'height="{max(base - top, 0):.1f}" fill="{color}"/>'
            )
        self.legend.append((label, color))

    def svg(self, css_class: str) -> str:
        axes = [
            f'<text x="{WIDTH / 2:.0f}" y="18" text-anchor="middle" class="title">{escape(self.title)}</text>',
            f'<line x1="{MARGIN["left"]}" y1="{HEIGHT - MARGIN["bottom"]}" x2="{WIDTH - MARGIN["right"]}" '
            f'y2="{HEIGHT - MARGIN["bottom"]}" stroke="#333"/>',
            f'<line x1="{MARGIN["left"]}" y1="{MARGIN["top"]}" x2="{MARGIN["left"]}" '
            f'y2="{HEIGHT - MARGIN["bottom"]}" stroke="#333"/>',
            f'<text x="{(MARGIN["left"] + WIDTH - MARGIN["right"]) / 2:.0f}" y="{HEIGHT - 8}" '
            f'text-anchor="middle">{escape(self.x_label)}</text>',
            f'<text x="14" y="{HEIGHT / 2:.0f}" text-anchor="middle" transform="rotate(-90 14 {HEIGHT / 2:.0f})">'
            f"{escape(self.y_label)}</text>",
        ]
        x_ticks, y_ticks = _nice_ticks(*self.x_range), _nice_ticks(*self.y_range)
        for t in x_ticks:
            x = self.px(t)
            axes.append(
                f'<line x1="{x:.1f}" y1="{HEIGHT - MARGIN["bottom"]}" x2="{x:.1f}" '
                f'y2="{HEIGHT - MARGIN["bottom"] + 4}" stroke="#333"/>'
                f'<text x="{x:.1f}" y="{HEIGHT - MARGIN["bottom"] + 16}" text-anchor="middle">{_fmt(t, _step(x_ticks))}</text>'
            )
        for t in y_ticks:
            y = self.py(t)
            axes.append(
                f'<line x1="{MARGIN["left"]}" y1="{y:.1f}" x2="{WIDTH - MARGIN["right"]}" y2="{y:.1f}" '
                f'stroke="#eee"/><text x="{MARGIN["left"] - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t, _step(y_ticks))}</text>'
            )
        legend = [
            f'<rect x="{WIDTH - MARGIN["right"] + 12}" y="{MARGIN["top"] + 16 * i}" width="10" height="10" '
            f'fill="{color}"/><text x="{WIDTH - MARGIN["right"] + 27}" y="{MARGIN["top"] + 16 * i + 9}">'
            f"{escape(label)}</text>"
            for i, (label, color) in enumerate(self.legend)
        ]
        if not self.parts:
            axes.append(
                f'<text x="{self.px(sum(self.x_range) / 2):.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle" '
                'class="empty">no live expiry to draw</text>'
            )
        body = "\n".join(axes + self.parts + legend)
        return (
            f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(self.title)}">\n{body}\n</svg>'
        )


def _range(*series: list[float]) -> tuple[float, float]:
    vals = [v for s in series for v in s if math.isfinite(v)]
    return (min(vals), max(vals)) if vals else (0.0, 1.0)


def smile_chart(underlying: str, chain: pd.DataFrame) -> str:
    """Mark IV vs log-moneyness per live expiry (out-of-the-money side), bid/ask IV band."""
    live = chain[
        ~chain["is_expiring"].astype(bool) & chain["mark_iv"].notna() & chain["log_moneyness"].notna()
    ]
    # one point per strike: the OTM option (call above the forward, put below), as desks draw smiles
    otm = live[(live["option_type"] == "call") == (live["log_moneyness"] >= 0)]
    xr = _range(otm["log_moneyness"].tolist())
    # the axis follows the marks: a placeholder ask IV (Deribit shows 500% for a one-tick offer on a
    # far wing) would flatten every smile, so bands are clipped to the marks' range plus a margin
    lo, hi = _range(otm["mark_iv"].tolist())
    yr = (max(lo - 0.25 * (hi - lo) - 1, 0.0), hi + 0.25 * (hi - lo) + 1)
    chart = Chart(f"{underlying} smile by expiry", "log-moneyness ln(K/F)", "IV (%)", xr, yr)
    for i, (expiration, g) in enumerate(otm.groupby("expiration", sort=True)):
        g = g.sort_values("log_moneyness")
        color = PALETTE[i % len(PALETTE)]
        both = g[g["bid_iv"].notna() & g["ask_iv"].notna()]
        chart.band(
            both["log_moneyness"].tolist(),
            both["bid_iv"].clip(*yr).tolist(),
            both["ask_iv"].clip(*yr).tolist(),
            color,
        )
        chart.line(g["log_moneyness"].tolist(), g["mark_iv"].tolist(), color, f"{expiration:%d%b%y}".upper())
    return chart.svg("smile")


def term_chart(underlying: str, expiries: pd.DataFrame) -> str:
    """ATM IV against days to expiry."""
    e = expiries[expiries["atm_iv"].notna()].sort_values("days_to_expiry")
    xs, ys = e["days_to_expiry"].tolist(), e["atm_iv"].tolist()
    chart = Chart(f"{underlying} ATM term structure", "days to expiry", "ATM IV (%)", _range(xs), _range(ys))
    if xs:
        chart.line(xs, ys, PALETTE[0], "ATM IV")
    return chart.svg("term")


def oi_chart(underlying: str, chain: pd.DataFrame) -> str:
    """Open interest by strike, calls beside puts, all expiries summed."""
    by = chain.groupby(["strike", "option_type"])["open_interest"].sum().unstack(fill_value=0.0)
    strikes = by.index.to_list()
    calls = by["call"].tolist() if "call" in by else [0.0] * len(strikes)
    puts = by["put"].tolist() if "put" in by else [0.0] * len(strikes)
    gaps = [b - a for a, b in itertools.pairwise(strikes)]
    width = (min(gaps) if gaps else max(abs(strikes[0]) * 0.1, 1.0) if strikes else 1.0) * 0.4
    xr = _range(strikes)
    chart = Chart(f"{underlying} open interest by strike", "strike", "open interest (contracts)",
                  (xr[0] - width, xr[1] + width), _range([0.0], calls, puts))  # fmt: skip
    if strikes:
        chart.bars(strikes, calls, width, -width / 2, PALETTE[2], "calls")
        chart.bars(strikes, puts, width, width / 2, PALETTE[3], "puts")
    return chart.svg("oi")


@functools.cache
def _template() -> jinja2.Template:
    """Compiled once per process (~5 ms a build otherwise, of a chain build's ~0.35 s at venue scale)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["j2", "html"])
    )
    env.filters["num"] = lambda v, spec="{:.2f}": "\u2014" if v is None or v != v else spec.format(v)
    return env.get_template("chain.html.j2")


def render_html(chain: pd.DataFrame, expiries: pd.DataFrame, as_of: date) -> str:
    sections = []
    for underlying, g in chain.groupby("underlying", sort=True):
        e = expiries[expiries["underlying"] == underlying]
        sections.append(
            {
                "underlying": underlying,
                "series": len(g),
                "open_interest": float(g["open_interest"].sum()),
                "volume": float(g["volume"].sum()),
                "volume_usd": float(g["volume_usd"].sum()),
                "mismatches": int(g["greeks_mismatch"].fillna(False).sum()),
                "charts": [smile_chart(underlying, g), term_chart(underlying, e), oi_chart(underlying, g)],
                "expiries": e.to_dict("records"),
            }
        )
    return _template().render(
        as_of=as_of.isoformat(), sections=sections, series=len(chain), expiry_count=len(expiries)
    )


def write_html(chain: pd.DataFrame, expiries: pd.DataFrame, as_of: date, path: Path) -> Path:
    from derivlake.reports.output import write_text

    return write_text(render_html(chain, expiries, as_of), path)
