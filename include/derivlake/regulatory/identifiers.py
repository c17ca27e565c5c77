"""Check digits and formats of the identifiers a regulatory file carries: LEI, ISIN, MIC, CFI, UTC times.

An XSD only checks the shape of an identifier; a regulator also rejects a well-shaped LEI or ISIN whose
check digits are wrong, so every file is checked here too before it is filed (domain.md section 5).
Standard library only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_LEI = re.compile(r"[A-Z0-9]{18}[0-9]{2}")
_ISIN = re.compile(r"[A-Z]{2}[A-Z0-9]{9}[0-9]")
_MIC = re.compile(r"[A-Z0-9]{4}")
_CFI = re.compile(r"[A-Z]{6}")

CFI_CATEGORIES = frozenset("ECDROFSHIJKLTM")
"""ISO 10962:2019 categories: equities, CIVs, debt, entitlements, listed options, futures, swaps,
non-listed options, spot, forwards, strategies, financing, referential instruments, others."""

# ISO 10962:2019 attributes of a Deribit contract (see cfi_for)
_OPTION_CFI = {"call": "OCEMCS", "put": "OPEMCS"}
_FUTURE_CFI = "FFMCSX"


def _digits(text: str) -> str:
    """Letters as their ISO 7064 / ISO 6166 values (A=10 ... Z=35), digits as themselves."""
    return "".join(str(int(ch, 36)) for ch in text)


def lei_check_digits(prefix18: str) -> str:
    """The two ISO 17442 check digits of an 18-character LEI prefix (ISO 7064 MOD 97-10)."""
    if not re.fullmatch(r"[A-Z0-9]{18}", prefix18):
        raise ValueError(f"an LEI prefix is 18 characters [A-Z0-9], got {prefix18!r}")
    return f"{98 - int(_digits(prefix18 + '00')) % 97:02d}"


def lei_is_valid(lei: str) -> bool:
    """20 characters [A-Z0-9] ending in two digits, and the whole LEI as a number is 1 modulo 97."""
    return isinstance(lei, str) and bool(_LEI.fullmatch(lei)) and int(_digits(lei)) % 97 == 1


def isin_is_valid(isin: str) -> bool:
    """ISO 6166: country letters, 9 alphanumerics, a Luhn check digit over the letter-expanded digits."""
    if not isinstance(isin, str) or not _ISIN.fullmatch(isin):
        return False
    total = 0
    for i, ch in enumerate(reversed(_digits(isin))):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def mic_is_valid(mic: str) -> bool:
    """ISO 10383 market identifier code: exactly 4 characters [A-Z0-9]."""
    return isinstance(mic, str) and bool(_MIC.fullmatch(mic))


def cfi_is_valid(cfi: str) -> bool:
    """6 uppercase letters whose first is an ISO 10962:2019 category."""
    return isinstance(cfi, str) and bool(_CFI.fullmatch(cfi)) and cfi[0] in CFI_CATEGORIES


def cfi_for(kind: str, option_type: str | None) -> str:
    """The ISO 10962:2019 CFI of a Deribit instrument: 'OCEMCS', 'OPEMCS' or 'FFMCSX'.

    Options are listed options (O), call (C) or put (P), then the four listed-option attributes:
    exercise European (E); underlying M (others): the table offers baskets, equities, debt, commodities,
    currencies, indices, options, futures, swaps and interest rates, and a crypto-asset is none of them
    (BTC is no ISO 4217 currency, and the Deribit index the contract settles on is the price of that one
    asset, not an index of constituents, so I is not used either); delivery cash (C); standardised (S).
    Futures and perpetuals (kind 'future') are financial futures (FF): underlying M for the same reason,
    cash delivery (C), standardised (S), and the fourth attribute is X (not applicable) for futures.
    """
    if kind == "future":
        return _FUTURE_CFI
    if kind == "option":
        cfi = _OPTION_CFI.get((option_type or "").lower())
        if cfi is None:
            raise ValueError(f"an option's type is 'call' or 'put', got {option_type!r}")
        return cfi
    raise ValueError(f"kind is 'option' or 'future', got {kind!r}")


def iso_utc(ts: datetime) -> str:
    """'YYYY-MM-DDTHH:MM:SS.ffffffZ', the RTS 22 trading date-time to the microsecond.

    ``ts`` is naive UTC (the lake's convention); an aware time is converted to UTC first.
    """
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return f"{ts:%Y-%m-%dT%H:%M:%S}.{ts.microsecond:06d}Z"
