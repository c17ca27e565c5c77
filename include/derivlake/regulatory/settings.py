"""Who reports, to whom and with which codes: the identifiers a regulatory file needs that the market data
does not carry. Read from `DERIVLAKE_REGULATORY_CONFIG` (a JSON file of any of the fields below), with
`DERIVLAKE_LEI` for the entity's LEI; the defaults serve the demo (a made-up LEI with valid check digits)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from derivlake.config import ConfigError
from derivlake.regulatory.identifiers import lei_check_digits, lei_is_valid, mic_is_valid

DEMO_LEI_PREFIX = "9845000DERIVLAKE00"
"""18 characters of a made-up LEI for the demo; its check digits are computed, so it validates."""


def demo_lei() -> str:
    return DEMO_LEI_PREFIX + lei_check_digits(DEMO_LEI_PREFIX)


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class RegulatorySettings:
    entity_lei: str = field(default_factory=demo_lei)
    """The investment firm: executing and submitting entity of RTS 22, sender of the files."""
    receiver: str = "ESMA"
    """The business application header's recipient (the competent authority's code)."""
    venue_mic: str = "XOFF"
    """Trading venue of the executions (RTS 22 field 36); the venue's own MIC where it has one."""
    branch_country: str = "NL"
    algo: str = "DERIVLAKEDESK"
    """The execution algorithm's code (RTS 22 field 59)."""
    account_leis: Mapping[str, str] = field(default_factory=lambda: _frozen({}), hash=False)
    """Desk account -> the LEI of the client it trades for; unlisted accounts trade on own account."""
    cftc_accounts: Mapping[str, str] = field(default_factory=lambda: _frozen({}), hash=False)
    """Desk account -> its CFTC account number (up to 12 digits); unlisted: a number derived from the id."""
    cftc_firm: str = "DLK"
    cftc_exchange: str = "DB"
    commodity_codes: Mapping[str, str] = field(
        default_factory=lambda: _frozen({"BTC": "BTC", "ETH": "ETH", "SOL": "SOL"}), hash=False
    )
    """Base currency -> the CFTC commodity code of its contracts."""
    strike_decimals: Mapping[str, int] = field(default_factory=lambda: _frozen({"SOL": 1}), hash=False)
    """Implied decimals of the 7-digit strike field, per base currency (SOL_USDC strikes such as 8.6)."""
    reportable_level: int = 25
    """Contracts in one expiry of a commodity that make an account reportable (CFTC Part 15)."""
    chunk_rows: int = 20_480
    """Fills read and written at a time: what bounds an export's memory, whatever the day's executions."""

    def __post_init__(self) -> None:
        leis = {
            "entity_lei": self.entity_lei,
            **{f"account_leis[{a!r}]": v for a, v in self.account_leis.items()},
        }
        for name, value in leis.items():
            if not lei_is_valid(value):
                raise ConfigError(f"regulatory setting {name}={value!r} is not a valid LEI (ISO 17442)")
        if not mic_is_valid(self.venue_mic):
            raise ConfigError(f"regulatory setting venue_mic={self.venue_mic!r} is not a MIC (4 of A-Z, 0-9)")

    def lei_of(self, account_id: str) -> str:
        return self.account_leis.get(account_id, self.entity_lei)

    def cftc_account(self, account_id: str) -> str:
        """The configured number, else a stable 12-digit one derived from the account id."""
        if account_id in self.cftc_accounts:
            return self.cftc_accounts[account_id]
        return str(int(hashlib.sha256(account_id.encode()).hexdigest(), 16) % 10**12)

    @classmethod
    def from_env(cls) -> RegulatorySettings:
        values: dict[str, Any] = {}
        path = os.environ.get("DERIVLAKE_REGULATORY_CONFIG")
        if path:
            try:
                values = json.loads(Path(path).read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"DERIVLAKE_REGULATORY_CONFIG={path!r}: {exc}") from None
            unknown = set(values) - {f.name for f in fields(cls)}
            if unknown:
                raise ConfigError(f"DERIVLAKE_REGULATORY_CONFIG={path!r}: unknown settings {sorted(unknown)}")
        if os.environ.get("DERIVLAKE_LEI"):
            values["entity_lei"] = os.environ["DERIVLAKE_LEI"]
        for name in ("account_leis", "cftc_accounts", "commodity_codes", "strike_decimals"):
            if name in values:
                values[name] = _frozen(values[name])
        return cls(**values)
