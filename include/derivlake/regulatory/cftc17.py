"""CFTC large-trader position records (Part 17), the fixed 80-character format of domain.md section 5.

The layout is data (``FIELDS``), not code, because the 2024 rule replaces this record with the Appendix C
data elements from 3 June 2026: the successor format becomes a sibling module, and nothing outside this one
knows a column number. ``format_record`` writes one record, ``parse_record`` reads one back (tests, and a
reader checking a filed file), ``aggregate_positions`` turns account positions into the reportable rows.

Formatting never truncates or guesses: a value that does not fit its field, a non-ASCII character or a
negative quantity raises ``RecordError`` naming the field and the value.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal

import numpy as np
import pandas as pd

RECORD_LENGTH = 80


class RecordError(ValueError):
    """A value that cannot be written to (or a line that cannot be read as) a Part 17 record."""


@dataclass(frozen=True)
class Field:
    """One fixed-width field: 1-based ``start`` column, ``length`` characters.

    ``alpha``: left-justified, blank-padded, uppercase. ``numeric``: zero-filled, right-justified, digits
    only (a ``date`` is written YYYYMMDD). ``optional`` fields are written as blanks when the value is
    None or empty; a required field with no value is an error, so a record never goes out half-empty.
    """

    name: str
    start: int
    length: int
    kind: Literal["alpha", "numeric"]
    optional: bool = False

    @property
    def stop(self) -> int:
        """0-based exclusive end, so ``line[f.start - 1 : f.stop]`` is the field's text."""
        return self.start - 1 + self.length


FIELDS: tuple[Field, ...] = (
    Field("report_type", 1, 2, "alpha"),
    Field("reporting_firm", 3, 3, "alpha"),
    Field("reserved_1", 6, 2, "alpha", optional=True),
    Field("account", 8, 12, "numeric"),
    Field("report_date", 20, 8, "numeric"),
    Field("exchange", 28, 2, "alpha"),
    Field("put_call", 30, 1, "alpha", optional=True),  # blank for futures
    Field("commodity", 31, 5, "alpha"),
    Field("expiration", 36, 8, "numeric"),
    Field("strike", 44, 7, "numeric", optional=True),  # blank for futures
    Field("exercise_style", 51, 1, "alpha", optional=True),  # blank for futures
    Field("long", 52, 7, "numeric"),
    Field("short", 59, 7, "numeric"),
    Field("commodity_2", 66, 5, "alpha", optional=True),
    Field("expiration_2", 71, 8, "numeric", optional=True),
    Field("reserved_2", 79, 1, "alpha", optional=True),
    Field("record_type", 80, 1, "alpha"),
)

FIELD_BY_NAME: Mapping[str, Field] = {f.name: f for f in FIELDS}
_RESERVED = frozenset({"reserved_1", "reserved_2"})
_DATE_FIELDS = frozenset({"report_date", "expiration", "expiration_2"})


def check_layout(fields: tuple[Field, ...], record_length: int) -> None:
    """Raise ``RecordError`` unless ``fields`` tile columns 1..record_length in order, no gap, no overlap."""
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise RecordError(f"duplicate field names in layout: {names}")
    column = 1
    for f in fields:
        if f.length < 1:
            raise RecordError(f"field {f.name!r} has length {f.length}")
        if f.start != column:
            what = "gap" if f.start > column else "overlap"
            raise RecordError(f"layout {what} at column {column}: field {f.name!r} starts at {f.start}")
        column += f.length
    if column != record_length + 1:
        raise RecordError(f"layout covers columns 1..{column - 1}, not 1..{record_length}")


check_layout(FIELDS, RECORD_LENGTH)


@dataclass(frozen=True, kw_only=True)
class PositionRecord:
    """One reportable account x contract x put/call x strike position, as filed.

    ``strike`` is already an integer in the commodity's strike units (see ``strike_units``: the caller
    scales). ``put_call``, ``strike`` and ``exercise_style`` are None for futures. ``commodity_2`` and
    ``expiration_2`` identify a second contract where the format needs one and are otherwise blank.

    ``record_type`` (column 80): domain.md does not give its code list; we assume "1" marks an ordinary
    position record and keep it a parameter so a different code (e.g. for a correction) needs no change
    here. Keyword-only: fifteen positional fields would invite a swapped long and short.
    """

    report_type: str = "RP"
    reporting_firm: str
    account: str
    report_date: date
    exchange: str
    put_call: str | None
    commodity: str
    expiration: date
    strike: int | None
    exercise_style: str | None
    long: int
    short: int
    commodity_2: str | None = None
    expiration_2: date | None = None
    record_type: str = "1"


def _fail(field: Field, value: object, why: str) -> RecordError:
    return RecordError(f"field {field.name!r} (columns {field.start}-{field.stop}): {value!r} {why}")


def _is_empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _format_alpha(field: Field, value: object) -> str:
    if not isinstance(value, str):
        raise _fail(field, value, "is not a string")
    if not value.isascii():
        raise _fail(field, value, "is not ASCII")
    if not value.isprintable():
        raise _fail(field, value, "has control characters")
    if value != value.strip():
        raise _fail(field, value, "has leading or trailing blanks")
    text = value.upper()
    if len(text) > field.length:
        raise _fail(field, value, f"is longer than {field.length} characters")
    return text.ljust(field.length, " ")


def _format_numeric(field: Field, value: object) -> str:
    if isinstance(value, datetime):  # a datetime is a date: refuse to drop its time silently
        raise _fail(field, value, "is a datetime; pass a date")
    if isinstance(value, date):
        text = f"{value.year:04d}{value.month:02d}{value.day:02d}"
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if value < 0:
            raise _fail(field, value, "is negative")
        text = str(int(value))
    elif isinstance(value, str):
        if not value.isascii():
            raise _fail(field, value, "is not ASCII")
        if not value.isdigit():
            raise _fail(field, value, "is not a string of digits")
        text = value
    else:
        raise _fail(field, value, "is not a non-negative integer, digit string or date")
    if len(text) > field.length:
        raise _fail(field, value, f"needs {len(text)} digits, the field has {field.length}")
    return text.rjust(field.length, "0")


def _format_field(field: Field, value: object) -> str:
    if _is_empty(value):
        if not field.optional:
            raise _fail(field, value, "is missing and the field is required")
        return " " * field.length
    if field.kind == "alpha":
        return _format_alpha(field, value)
    return _format_numeric(field, value)


def _check_semantics(rec: PositionRecord) -> None:
    """Checks the layout cannot express: dates are dates, codes are in their lists, futures vs options."""
    by_name = FIELD_BY_NAME
    for name in _DATE_FIELDS:
        value = getattr(rec, name)
        if not (value is None and by_name[name].optional) and not isinstance(value, date):
            raise _fail(by_name[name], value, "is not a date")
    put_call = (rec.put_call or "").upper()
    if put_call not in ("", "C", "P"):
        raise _fail(by_name["put_call"], rec.put_call, "is not 'C', 'P' or None")
    style = (rec.exercise_style or "").upper()
    if style not in ("", "E", "A"):
        raise _fail(by_name["exercise_style"], rec.exercise_style, "is not 'E', 'A' or None")
    if (put_call == "") != (rec.strike is None):
        raise _fail(by_name["strike"], rec.strike, f"does not match put_call {rec.put_call!r}")


def format_record(rec: PositionRecord) -> str:
    """The record as exactly ``RECORD_LENGTH`` ASCII characters (no line terminator)."""
    _check_semantics(rec)
    line = "".join(
        " " * f.length if f.name in _RESERVED else _format_field(f, getattr(rec, f.name)) for f in FIELDS
    )
    if len(line) != RECORD_LENGTH:  # cannot happen with a tiled layout; guard the invariant anyway
        raise RecordError(f"record is {len(line)} characters, not {RECORD_LENGTH}")
    return line


def parse_record(line: str) -> dict[str, str]:
    """Field name -> raw text with surrounding blanks stripped (numbers keep their leading zeros).

    ``line`` excludes the line terminator; anything but ``RECORD_LENGTH`` ASCII characters is an error.
    """
    if len(line) != RECORD_LENGTH:
        raise RecordError(f"record is {len(line)} characters, not {RECORD_LENGTH}: {line!r}")
    if not line.isascii():
        raise RecordError(f"record is not ASCII: {line!r}")
    return {f.name: line[f.start - 1 : f.stop].strip() for f in FIELDS}


def strike_units(strike: float, decimals: int) -> int:
    """The strike as an integer with ``decimals`` implied decimals: (8.6, 1) -> 86, (100000, 0) -> 100000.

    Goes through ``Decimal(repr(float))`` so 8.6 is 8.6, not 8.5999...; a strike with more decimals than
    the field carries (8.65 with 1) raises instead of rounding to a different contract.
    """
    if isinstance(strike, bool) or decimals < 0:
        raise RecordError(f"strike_units({strike!r}, {decimals!r}): bad arguments")
    try:
        exact = Decimal(repr(float(strike)))
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise RecordError(f"strike {strike!r} is not a number") from exc
    if not exact.is_finite() or exact < 0:
        raise RecordError(f"strike {strike!r} is not a finite non-negative number")
    scaled = exact.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise RecordError(f"strike {strike!r} has more than {decimals} decimals")
    return int(scaled)


AGGREGATE_COLUMNS = (
    "account_id",
    "commodity",
    "expiration",
    "put_call",
    "strike",
    "exercise_style",
    "long",
    "short",
)
_INPUT_COLUMNS = ("account_id", "commodity", "put_call", "expiration", "strike", "exercise_style", "position")


def _round_half_away(x: pd.Series) -> pd.Series:
    """Whole contracts, halves away from zero; the 1e-9 pre-round drops float noise of summed fractions."""
    x = x.round(9)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def aggregate_positions(positions: pd.DataFrame, reportable_level: Mapping[str, int] | int) -> pd.DataFrame:
    """The rows to file: one per reportable account x commodity x expiration x put_call x strike.

    Input columns: account_id, commodity, put_call ('C'/'P'/None for futures), expiration (date), strike
    (NaN for futures), exercise_style, position (signed contracts). Rows of the same series in one account
    net against each other (an account holds one net position per contract); the net is rounded to whole
    contracts, halves away from zero, once per series after netting (so ten 0.1 rows make 1, not 0). A
    positive net is ``long``, a negative one ``short``; a series that nets to zero is not filed.

    Reportability (Part 15.00(p) as we read it): an account x commodity is reportable when ANY single
    expiration reaches ``reportable_level`` (>=) on one side: long or short of the futures, of the calls
    (all strikes of that expiration together) or of the puts. A reportable account then files every
    series it holds in that commodity, however small; an account below the level files none.
    ``reportable_level`` is one level for all commodities or a commodity -> level mapping, which must
    cover every commodity present.

    Sorted by account, commodity, expiration, put_call (futures first, then C, then P), strike.
    """
    missing = [c for c in _INPUT_COLUMNS if c not in positions.columns]
    if missing:
        raise RecordError(f"positions lack columns {missing}")
    df = pd.DataFrame(
        {
            "account_id": positions["account_id"].to_numpy(dtype=object),
            "commodity": positions["commodity"].to_numpy(dtype=object),
            "expiration": positions["expiration"].to_numpy(dtype=object),
            # "" stands for futures in the keys: groupby then never drops a NaN key and "" sorts first
            "put_call": positions["put_call"].astype(object).where(positions["put_call"].notna(), ""),
            "strike": positions["strike"].astype("float64"),
            "exercise_style": positions["exercise_style"]
            .astype(object)
            .where(positions["exercise_style"].notna(), ""),
            "position": positions["position"].astype("float64"),
        }
    )
    bad_pc = ~df["put_call"].isin(["", "C", "P"])
    if bad_pc.any():
        raise RecordError(f"put_call values {sorted(set(df.loc[bad_pc, 'put_call']))} are not C/P/None")
    if ((df["put_call"] == "") != df["strike"].isna()).any():
        raise RecordError("strike must be NaN exactly for futures (put_call None)")
    if not np.isfinite(df["position"]).all():
        raise RecordError("position has NaN or infinite values")

    key = ["account_id", "commodity", "expiration", "put_call", "strike"]
    styles = df.groupby(key, dropna=False, sort=False)["exercise_style"].nunique()
    if (styles > 1).any():
        raise RecordError(f"series with more than one exercise_style: {list(styles[styles > 1].index)}")

    out = (
        df.groupby(key, dropna=False, sort=False)
        .agg(exercise_style=("exercise_style", "first"), net=("position", "sum"))
        .reset_index()
    )
    net = _round_half_away(out["net"])
    out["long"] = net.clip(lower=0).astype("int64")
    out["short"] = (-net).clip(lower=0).astype("int64")
    out = out[out["long"].ne(0) | out["short"].ne(0)]

    if isinstance(reportable_level, Mapping):
        level = out["commodity"].map(dict(reportable_level))
        if level.isna().any():
            raise RecordError(
                f"no reportable level for commodities {sorted(set(out['commodity'][level.isna()]))}"
            )
    else:
        level = pd.Series(reportable_level, index=out.index, dtype="float64")
    if (level <= 0).any():
        raise RecordError(f"reportable level must be positive: {reportable_level!r}")
    side = out.groupby(["account_id", "commodity", "expiration", "put_call"], sort=False)[["long", "short"]]
    reaches = (side.transform("sum").max(axis=1) >= level).rename("reaches")
    reportable = reaches.groupby([out["account_id"], out["commodity"]], sort=False).transform("any")
    out = out[reportable]

    out = out.sort_values(key, kind="stable").reset_index(drop=True)
    for name in ("put_call", "exercise_style"):  # back from the "" key to None, as PositionRecord takes
        column = out[name].astype(object)
        out[name] = column.where(column != "", None)
    return out.loc[:, list(AGGREGATE_COLUMNS)]
