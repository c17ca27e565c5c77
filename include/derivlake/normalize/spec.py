"""What a topic's messages must look like, and which lake tables they feed.

A spec is data: the JSON fields with their DuckDB types, which of them are required, and the
`.sql` files that project the validated rows into lake tables. `core.py` turns a spec into one
column-wise parse of a whole batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

SQL_DIR = Path(__file__).with_name("sql")

MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
# Base currencies the venue lists (Deribit, incl. the USDC-linear alts); anything else is unknown.
KNOWN_CURRENCIES = (
    "BTC", "ETH", "SOL", "USDC", "USDT", "XRP", "AVAX", "MATIC", "DOGE", "LTC", "ADA", "DOT", "LINK",
    "BCH", "UNI", "NEAR", "ALGO", "TRX", "BNB", "PAXG", "EURR", "TRUMP",
)  # fmt: skip


def instrument_pattern(currencies: tuple[str, ...] = KNOWN_CURRENCIES) -> str:
    """Deribit instrument grammar (domain.md section 1) as one regular expression."""
    cur = "|".join(currencies)
    expiry = f"[1-9][0-9]?(?:{MONTHS})[0-9]{{2}}"
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
    symbol_field: str | None = None  # validated against the instrument grammar
    symbol_pattern: str = field(default_factory=instrument_pattern)
    key_fallback: str | None = None  # a field taken from the Kafka key when absent from the value

    def structure(self, as_text: bool = False) -> str:
        """The json_transform structure: typed, or every scalar as VARCHAR to tell missing from mistyped."""

        def conv(node: object) -> object:
            if isinstance(node, dict):
                return {k: conv(v) for k, v in node.items()}
            if isinstance(node, list):
                return [conv(node[0])]
            return "VARCHAR" if as_text else node

        return json.dumps(conv(self.fields))

    def scalar_paths(self) -> list[str]:
        """Dotted paths of every scalar field (lists are checked by their own SQL)."""
        out: list[str] = []

        def walk(prefix: str, node: object) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            elif not isinstance(node, list):
                out.append(prefix)

        walk("", self.fields)
        return out
