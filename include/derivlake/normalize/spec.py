"""What a topic's messages must look like, and which lake tables they feed.

A spec is data: the JSON fields with their DuckDB types, which of them are required, and the
`.sql` files that project the validated rows into lake tables. `core.py` turns a spec into one
column-wise parse of a whole batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SQL_DIR = Path(__file__).with_name("sql")

MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
# Epoch-ms fields are taken in [2000-01-01, 3000-01-02] (Deribit's perpetuals expire 3000-01-01 08:00):
# a value in µs or ns is quarantined, not written to a partition of the year 56949 or overflowing
MS_TIMESTAMP_MIN, MS_TIMESTAMP_MAX = 946_684_800_000, 32_503_766_400_000
# Base currencies the venue lists (Deribit, incl. the USDC-linear alts); anything else is unknown.
KNOWN_CURRENCIES = (
    "BTC", "ETH", "SOL", "USDC", "USDT", "XRP", "AVAX", "MATIC", "DOGE", "LTC", "ADA", "DOT", "LINK",
    "BCH", "UNI", "NEAR", "ALGO", "TRX", "BNB", "PAXG", "EURR", "TRUMP",
)  # fmt: skip


def unknown_currencies(currencies: tuple[str, ...], extra: tuple[str, ...] = ()) -> list[str]:
    """The `currencies` a drain would quarantine the instruments of (unknown_instrument), given the
    DERIVLAKE_EXTRA_CURRENCIES `extra`."""
    accepted = {*KNOWN_CURRENCIES, *extra}
    return [c for c in currencies if c.upper() not in accepted]


def instrument_pattern(currencies: tuple[str, ...] = KNOWN_CURRENCIES) -> str:
    """Deribit instrument grammar (domain.md section 1) as one regular expression."""
    cur = "|".join(currencies)
    expiry = f"(?:[1-9]|[12][0-9]|3[01])(?:{MONTHS})[0-9]{{2}}"
    option = f"(?:{cur})(?:_USDC|_USDT)?-{expiry}-[0-9]+(?:d[0-9]+)?-[CP]"
    future = f"(?:{cur})(?:_USDC|_USDT)?-{expiry}"
    perpetual = f"(?:{cur})(?:_USDC|_USDT)?-PERPETUAL"
    return f"^(?:{option}|{future}|{perpetual})$"


def index_pattern(currencies: tuple[str, ...] = KNOWN_CURRENCIES) -> str:
    cur = "|".join(c.lower() for c in currencies)
    return f"^(?:{cur})_(?:usd|usdc|usdt)$"


@dataclass(frozen=True)
class Output:
    """One lake table fed by a topic: the projection SQL and the upstream-duplicate key."""

    table: str
    sql_file: str
    dedup_key: tuple[str, ...] = ()
    exploded: bool = False  # a message can yield several rows (book levels): count messages, not rows
    # A re-sent message repeats its exchange timestamp: matching it too lets the lake lookup read only
    # the files of the batch's time range, so it costs the same late in a day as early (market data)
    dedup_same_time: bool = False
    # Versioned rows (instrument specs): a row repeating the entity's latest version is the duplicate
    versions_of: str | None = None

    @property
    def sql(self) -> str:
        return (SQL_DIR / self.sql_file).read_text()


@dataclass(frozen=True)
class TopicNormalizer:
    """How one topic kind is parsed, validated and projected."""

    kind: str
    fields: dict[str, object]  # JSON field -> DuckDB type name, or a nested dict for objects
    required: tuple[str, ...]  # dotted paths that must be present and non-null
    outputs: tuple[Output, ...]
    type_checked: tuple[str, ...] = ()  # optional fields whose wrong type quarantines (besides `required`)
    symbol_field: str | None = None  # validated against the grammar, over `currencies`
    symbol_grammar: Callable[[tuple[str, ...]], str] = instrument_pattern
    currencies: tuple[str, ...] = KNOWN_CURRENCIES
    key_fallback: str | None = None  # a field taken from the Kafka key when absent from the value

    @property
    def symbol_pattern(self) -> str:
        return self.symbol_grammar(self.currencies)

    @property
    def exploded_lists(self) -> int:
        """Top-level list fields that an exploded output turns into rows (book: bids and asks), else 0."""
        if not any(out.exploded for out in self.outputs):
            return 0
        return sum(isinstance(t, list) for t in self.fields.values())

    def structure(self) -> str:
        """The json_transform structure (lenient: a mistyped value becomes NULL, so `checked` tells)."""
        return json.dumps(self.fields)

    @property
    def ms_timestamps(self) -> tuple[str, ...]:
        """Checked paths holding epoch milliseconds (range-checked before `ms_ts` converts them)."""
        return tuple(p for p in self.checked if p.endswith("timestamp"))

    @property
    def doubles(self) -> tuple[str, ...]:
        """Paths of the DOUBLE fields (nested objects included, lists not): JSON's NaN and Infinity
        tokens, "NaN" or "inf" strings and 1e999 all parse into them as non-finite numbers."""

        def walk(fields: dict[str, object], prefix: str) -> list[str]:
            out = []
            for name, duck_type in fields.items():
                if isinstance(duck_type, dict):
                    out += walk(duck_type, f"{prefix}{name}.")
                elif duck_type == "DOUBLE":
                    out.append(prefix + name)
            return out

        return tuple(walk(self.fields, ""))

    @property
    def checked(self) -> tuple[str, ...]:
        """Paths read raw as well, to tell a missing value from a mistyped one (one extra parse)."""
        return tuple(dict.fromkeys(self.required + self.type_checked))
