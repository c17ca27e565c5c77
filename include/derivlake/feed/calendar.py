"""Deribit's expiry calendar and instrument-name grammar.

Kept apart from the simulator because tests and normalizers need the same rules: every expiry at 08:00 UTC,
dailies every day, weeklies on Fridays, monthlies on the last Friday, quarterlies on the last Friday of
Mar/Jun/Sep/Dec; names like `BTC-9JUN20-9875-P` (day not zero-padded) and `SOL_USDC-29MAY26-8d6-P`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
KNOWN_BASES = ("BTC", "ETH", "SOL", "XRP", "MATIC", "AVAX", "DOGE", "UNI", "LINK", "ADA", "DOT", "BNB")
EXPIRY_HOUR = 8

_NAME_RE = re.compile(
    r"^(?P<base>[A-Z]+)(?:_(?P<quote>USDC|USDT))?-"
    r"(?:(?P<perp>PERPETUAL)|(?P<day>[1-9]\d?)(?P<mon>[A-Z]{3})(?P<yy>\d{2})"
    r"(?:-(?P<strike>\d+(?:d\d+)?)-(?P<cp>[CP]))?)$"
)


@dataclass(frozen=True)
class InstrumentName:
    """A parsed Deribit instrument name."""

    base: str
    quote: str | None  # "USDC" for linear instruments, None for inverse (coin-settled)
    kind: str  # "option" | "future" | "perpetual"
    expiry: datetime | None
    strike: float | None
    option_type: str | None  # "call" | "put"

    @property
    def linear(self) -> bool:
        return self.quote is not None


def expiry_at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, EXPIRY_HOUR, tzinfo=UTC)


def format_expiry(expiry: datetime | date) -> str:
    """`27DEC24`; the day is not zero-padded (`9JUN20`)."""
    return f"{expiry.day}{MONTHS[expiry.month - 1]}{expiry.year % 100:02d}"


def format_strike(strike: float) -> str:
    """Integer strikes as digits, fractional ones with `d` as the decimal point (8.6 -> `8d6`)."""
    if abs(strike - round(strike)) < 1e-9:
        return str(round(strike))
    text = f"{strike:.6f}".rstrip("0")
    return text.replace(".", "d")


def option_name(market: str, expiry: datetime, strike: float, is_call: bool) -> str:
    return f"{market}-{format_expiry(expiry)}-{format_strike(strike)}-{'C' if is_call else 'P'}"


def future_name(market: str, expiry: datetime) -> str:
    return f"{market}-{format_expiry(expiry)}"


def parse_instrument(name: str) -> InstrumentName | None:
    """Parse a name in Deribit grammar; None if it does not parse or has an unknown base currency."""
    m = _NAME_RE.match(name)
    if not m or m["base"] not in KNOWN_BASES:
        return None
    if m["perp"]:
        return InstrumentName(m["base"], m["quote"], "perpetual", None, None, None)
    if m["mon"] not in MONTHS:
        return None
    try:
        day = date(2000 + int(m["yy"]), MONTHS.index(m["mon"]) + 1, int(m["day"]))
    except ValueError:
        return None
    if m["strike"] is None:
        return InstrumentName(m["base"], m["quote"], "future", expiry_at(day), None, None)
    strike = float(m["strike"].replace("d", "."))
    return InstrumentName(
        m["base"], m["quote"], "option", expiry_at(day), strike, "call" if m["cp"] == "C" else "put"
    )


def is_last_friday(day: date) -> bool:
    return day.weekday() == 4 and (day + timedelta(days=7)).month != day.month


def settlement_period(day: date) -> str:
    """Deribit's `settlement_period` of an expiry date: month, week or day."""
    if is_last_friday(day):
        return "month"
    return "week" if day.weekday() == 4 else "day"


def is_quarterly(day: date) -> bool:
    return is_last_friday(day) and day.month % 3 == 0


@dataclass(frozen=True)
class ListingPolicy:
    """How many expiries of each cycle are listed at any time."""

    dailies: int = 2
    weeklies: int = 1
    monthlies: int = 1
    quarterlies: int = 1


def listed_expiries(at: datetime, policy: ListingPolicy) -> list[datetime]:
    """Expiries strictly after `at` that the venue lists at `at`, sorted.

    Listings roll at 08:00 UTC: the set only changes when `at` crosses an expiry time.
    """
    first = at.date() if at < expiry_at(at.date()) else at.date() + timedelta(days=1)
    days: set[date] = set()
    day, n = first, 0
    while n < policy.dailies:
        days.add(day)
        day, n = day + timedelta(days=1), n + 1
    fridays = [first + timedelta(days=(4 - first.weekday()) % 7 + 7 * i) for i in range(60)]
    days.update(fridays[: policy.weeklies])
    days.update([d for d in fridays if is_last_friday(d)][: policy.monthlies])
    quarters: list[date] = []
    probe = first
    while len(quarters) < policy.quarterlies:
        fr = probe + timedelta(days=(4 - probe.weekday()) % 7)
        while True:
            if is_quarterly(fr):
                quarters.append(fr)
                break
            fr += timedelta(days=7)
        probe = fr + timedelta(days=1)
    days.update(quarters)
    return sorted(expiry_at(d) for d in days)
