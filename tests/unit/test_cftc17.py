"""CFTC Part 17 80-character records against the column layout of domain.md section 5, written out by hand."""

from __future__ import annotations

import dataclasses
import math
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from derivlake.regulatory.cftc17 import (
    FIELDS,
    RECORD_LENGTH,
    Field,
    PositionRecord,
    RecordError,
    aggregate_positions,
    check_layout,
    format_record,
    parse_record,
    strike_units,
)

REPORT_DATE = date(2026, 6, 12)
JUN, SEP = date(2026, 6, 26), date(2026, 9, 25)

# domain.md section 5, transcribed independently of FIELDS: (name, 1-based start, length)
DOMAIN_LAYOUT = [
    ("report_type", 1, 2),
    ("reporting_firm", 3, 3),
    ("reserved_1", 6, 2),
    ("account", 8, 12),
    ("report_date", 20, 8),
    ("exchange", 28, 2),
    ("put_call", 30, 1),
    ("commodity", 31, 5),
    ("expiration", 36, 8),
    ("strike", 44, 7),
    ("exercise_style", 51, 1),
    ("long", 52, 7),
    ("short", 59, 7),
    ("commodity_2", 66, 5),
    ("expiration_2", 71, 8),
    ("reserved_2", 79, 1),
    ("record_type", 80, 1),
]

FUTURE = PositionRecord(
    reporting_firm="123",
    account="12345",
    report_date=REPORT_DATE,
    exchange="DB",
    put_call=None,
    commodity="btc",
    expiration=JUN,
    strike=None,
    exercise_style=None,
    long=30,
    short=0,
)
FUTURE_LINE = (
    "RP"  # 1-2 report type
    "123"  # 3-5 reporting firm
    "  "  # 6-7 reserved
    "000000012345"  # 8-19 account, zero-filled right-justified
    "20260612"  # 20-27 report date
    "DB"  # 28-29 exchange
    " "  # 30 put/call: blank for futures
    "BTC  "  # 31-35 commodity, uppercased, left-justified
    "20260626"  # 36-43 expiration
    "       "  # 44-50 strike: blank for futures
    " "  # 51 exercise style: blank for futures
    "0000030"  # 52-58 long
    "0000000"  # 59-65 short
    "     "  # 66-70 commodity 2
    "        "  # 71-78 expiration 2
    " "  # 79 reserved
    "1"  # 80 record type
)
FUTURE_FIELDS = {
    "report_type": "RP",
    "reporting_firm": "123",
    "reserved_1": "  ",
    "account": "000000012345",
    "report_date": "20260612",
    "exchange": "DB",
    "put_call": " ",
    "commodity": "BTC  ",
    "expiration": "20260626",
    "strike": "       ",
    "exercise_style": " ",
    "long": "0000030",
    "short": "0000000",
    "commodity_2": "     ",
    "expiration_2": "        ",
    "reserved_2": " ",
    "record_type": "1",
}

OPTION = PositionRecord(
    reporting_firm="123",
    account="987654321012",
    report_date=REPORT_DATE,
    exchange="DB",
    put_call="C",
    commodity="ETH",
    expiration=date(2026, 12, 25),
    strike=4500,
    exercise_style="E",
    long=0,
    short=1250,
    commodity_2="ETH",
    expiration_2=date(2027, 3, 26),
)
OPTION_LINE = (
    "RP"  # 1-2 report type
    "123"  # 3-5 reporting firm
    "  "  # 6-7 reserved
    "987654321012"  # 8-19 account: all 12 digits used
    "20260612"  # 20-27 report date
    "DB"  # 28-29 exchange
    "C"  # 30 put/call
    "ETH  "  # 31-35 commodity
    "20261225"  # 36-43 expiration
    "0004500"  # 44-50 strike, zero-filled
    "E"  # 51 exercise style (European)
    "0000000"  # 52-58 long
    "0001250"  # 59-65 short
    "ETH  "  # 66-70 commodity 2
    "20270326"  # 71-78 expiration 2
    " "  # 79 reserved
    "1"  # 80 record type
)
OPTION_FIELDS = {
    "report_type": "RP",
    "reporting_firm": "123",
    "reserved_1": "  ",
    "account": "987654321012",
    "report_date": "20260612",
    "exchange": "DB",
    "put_call": "C",
    "commodity": "ETH  ",
    "expiration": "20261225",
    "strike": "0004500",
    "exercise_style": "E",
    "long": "0000000",
    "short": "0001250",
    "commodity_2": "ETH  ",
    "expiration_2": "20270326",
    "reserved_2": " ",
    "record_type": "1",
}


# --- layout -------------------------------------------------------------------------------------------------


def test_fields_match_domain_layout():
    assert [(f.name, f.start, f.length) for f in FIELDS] == DOMAIN_LAYOUT
    assert RECORD_LENGTH == 80


def test_layout_tiles_columns_1_to_80():
    columns = [c for f in FIELDS for c in range(f.start, f.start + f.length)]
    assert columns == list(range(1, 81))  # in order: no gap, no overlap
    check_layout(FIELDS, RECORD_LENGTH)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ((Field("a", 1, 2, "alpha"), Field("b", 4, 2, "alpha")), "gap"),
        ((Field("a", 1, 2, "alpha"), Field("b", 2, 3, "alpha")), "overlap"),
        ((Field("a", 1, 2, "alpha"), Field("b", 3, 1, "alpha")), "not 1..5"),
        ((Field("a", 1, 2, "alpha"), Field("a", 3, 3, "alpha")), "duplicate"),
    ],
)
def test_broken_layouts_are_rejected(fields, message):
    with pytest.raises(RecordError, match=message):
        check_layout(fields, 5)


# --- formatting ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "line", "fields"),
    [(FUTURE, FUTURE_LINE, FUTURE_FIELDS), (OPTION, OPTION_LINE, OPTION_FIELDS)],
    ids=["future", "option"],
)
def test_record_is_the_hand_written_line(record, line, fields):
    assert len(line) == 80
    out = format_record(record)
    assert out == line
    assert out.isascii()
    for name, start, length in DOMAIN_LAYOUT:
        assert out[start - 1 : start - 1 + length] == fields[name], name


def test_account_is_zero_filled_and_alpha_is_blank_padded():
    out = format_record(FUTURE)
    assert out[7:19] == "000000012345"
    assert out[30:35] == "BTC  "  # left-justified, uppercased
    assert out[29] == " "  # put/call blank for a future
    assert format_record(dataclasses.replace(FUTURE, account=12345))[7:19] == "000000012345"


def test_empty_optional_numeric_is_blanks_not_zeros():
    out = format_record(dataclasses.replace(OPTION, commodity_2=None, expiration_2=None))
    assert out[65:78] == " " * 13


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"account": "1234567890123"}, "account"),  # 13 digits
        ({"reporting_firm": "1234"}, "reporting_firm"),
        ({"long": 12345678}, "long"),  # 8 digits
        ({"short": 10_000_000}, "short"),
        ({"commodity": "BTCUSD"}, "commodity"),
        ({"long": -1}, "long"),
        ({"long": 5.0}, "long"),  # a float is not a contract count
        ({"long": True}, "long"),
        ({"account": "12-45"}, "account"),
        ({"account": "１２３"}, "account"),  # full-width digits: str.isdigit() alone would pass them
        ({"commodity": "BTÇ"}, "commodity"),  # non-ASCII
        ({"exchange": "D\n"}, "exchange"),
        ({"exchange": " D"}, "exchange"),
        ({"reporting_firm": None}, "reporting_firm"),  # required field missing
        ({"account": ""}, "account"),
        ({"report_date": "20260612"}, "report_date"),  # dates must be dates
        ({"expiration": datetime(2026, 6, 26, 8)}, "expiration"),
        ({"put_call": "X", "strike": 1}, "put_call"),
        ({"exercise_style": "B"}, "exercise_style"),
        ({"strike": 100000}, "strike"),  # a future with a strike
    ],
)
def test_bad_values_raise_naming_the_field(change, field):
    with pytest.raises(RecordError, match=f"'{field}'") as info:
        format_record(dataclasses.replace(FUTURE, **change))
    assert isinstance(info.value, ValueError)
    assert repr(change[field]) in str(info.value)


def test_option_without_strike_raises():
    with pytest.raises(RecordError, match="'strike'"):
        format_record(dataclasses.replace(OPTION, strike=None))


def test_numpy_integers_are_accepted():
    out = format_record(dataclasses.replace(OPTION, long=np.int64(7), short=np.int64(0)))
    assert out[51:65] == "0000007" + "0000000"


# --- parsing ------------------------------------------------------------------------------------------------


def test_parse_round_trips():
    assert parse_record(format_record(FUTURE)) == {k: v.strip() for k, v in FUTURE_FIELDS.items()}
    assert parse_record(format_record(OPTION)) == {k: v.strip() for k, v in OPTION_FIELDS.items()}
    assert parse_record(FUTURE_LINE)["account"] == "000000012345"


@pytest.mark.parametrize("line", [FUTURE_LINE[:79], FUTURE_LINE + " ", FUTURE_LINE + "\n", ""])
def test_parse_rejects_wrong_length(line):
    with pytest.raises(RecordError, match="not 80"):
        parse_record(line)


def test_parse_rejects_non_ascii():
    with pytest.raises(RecordError, match="ASCII"):
        parse_record("É" + FUTURE_LINE[1:])


# --- strikes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strike", "decimals", "units"),
    [
        (8.6, 1, 86),
        (8.6, 3, 8600),
        (100000.0, 0, 100000),
        (100000, 0, 100000),
        (0.07, 2, 7),  # 0.07 * 100 is 7.000000000000001 in floats
        (1.1, 1, 11),  # 1.1 * 10 is 11.000000000000002 in floats
        (np.float64(3250.5), 1, 32505),
    ],
)
def test_strike_units(strike, decimals, units):
    assert strike_units(strike, decimals) == units


@pytest.mark.parametrize(
    ("strike", "decimals"), [(8.65, 1), (100000.5, 0), (-5.0, 0), (math.nan, 2), (math.inf, 0)]
)
def test_strike_units_refuses_to_round(strike, decimals):
    with pytest.raises(RecordError):
        strike_units(strike, decimals)


# --- aggregation --------------------------------------------------------------------------------------------


def _positions(rows):
    return pd.DataFrame(
        rows,
        columns=["account_id", "commodity", "put_call", "expiration", "strike", "exercise_style", "position"],
    )


NAN = math.nan
POSITION_ROWS = [
    # 1001 BTC: reportable through its June future (20 + 15 - 5 = 30 >= 25); every BTC series is filed
    ("1001", "BTC", None, JUN, NAN, None, 20.0),
    ("1001", "BTC", None, JUN, NAN, None, 15.0),
    ("1001", "BTC", None, JUN, NAN, None, -5.0),
    ("1001", "BTC", "C", JUN, 100000.0, "E", -3.0),
    ("1001", "BTC", "C", JUN, 100000.0, "E", 1.0),  # nets with the row above: short 2
    ("1001", "BTC", "P", SEP, 80000.0, "E", 1.0),  # small, kept
    # 1002: BTC below the level (dropped), ETH above its own level (kept)
    ("1002", "BTC", None, JUN, NAN, None, -10.0),
    ("1002", "BTC", "C", JUN, 100000.0, "E", 4.0),
    ("1002", "ETH", None, JUN, NAN, None, 300.0),
    # 1003: 40 long and 20 short of one future net to 20 < 25: not reportable although the gross is 60
    ("1003", "BTC", None, JUN, NAN, None, 40.0),
    ("1003", "BTC", None, JUN, NAN, None, -20.0),
    # 1004: June calls long 15 + 10 across two strikes = 25: reportable
    ("1004", "BTC", "C", JUN, 110000.0, "E", 10.0),
    ("1004", "BTC", "C", JUN, 100000.0, "E", 15.0),
    # 1005: June calls 15 and June puts 10 are separate sides: not reportable
    ("1005", "BTC", "C", JUN, 100000.0, "E", 15.0),
    ("1005", "BTC", "P", JUN, 100000.0, "E", 10.0),
]
LEVELS = {"BTC": 25, "ETH": 250}
EXPECTED = [
    # account, commodity, expiration, put_call, strike, exercise_style, long, short
    ("1001", "BTC", JUN, None, None, None, 30, 0),
    ("1001", "BTC", JUN, "C", 100000.0, "E", 0, 2),
    ("1001", "BTC", SEP, "P", 80000.0, "E", 1, 0),
    ("1002", "ETH", JUN, None, None, None, 300, 0),
    ("1004", "BTC", JUN, "C", 100000.0, "E", 15, 0),
    ("1004", "BTC", JUN, "C", 110000.0, "E", 10, 0),
]


def _rows(out: pd.DataFrame) -> list[tuple]:
    return [
        tuple(None if isinstance(v, float) and math.isnan(v) else v for v in row)
        for row in out.itertuples(index=False, name=None)
    ]


def test_aggregate_keeps_reportable_accounts_with_all_their_series():
    out = aggregate_positions(_positions(POSITION_ROWS), LEVELS)
    assert list(out.columns) == [
        "account_id",
        "commodity",
        "expiration",
        "put_call",
        "strike",
        "exercise_style",
        "long",
        "short",
    ]
    assert _rows(out) == EXPECTED
    assert out["long"].dtype == np.int64 and out["short"].dtype == np.int64


def test_aggregate_order_does_not_depend_on_input_order():
    shuffled = _positions(POSITION_ROWS).sample(frac=1.0, random_state=7)
    assert _rows(aggregate_positions(shuffled, LEVELS)) == EXPECTED
    assert _rows(aggregate_positions(_positions(POSITION_ROWS[::-1]), LEVELS)) == EXPECTED


def test_aggregate_single_level_and_level_is_reached_inclusively():
    out = aggregate_positions(_positions(POSITION_ROWS), 300)
    assert _rows(out) == [EXPECTED[3]]  # ETH future 300 >= 300; nothing in BTC reaches 300
    out = aggregate_positions(_positions(POSITION_ROWS), 301)
    assert out.empty


def test_aggregate_rounds_the_net_half_away_from_zero():
    rows = [
        ("7", "BTC", None, JUN, NAN, None, 2.5),  # -> 3
        ("7", "BTC", "C", JUN, 1000.0, "E", -2.5),  # -> short 3
        ("7", "BTC", "P", JUN, 1000.0, "E", 2.4),  # -> 2
        *[("7", "BTC", "P", SEP, 1000.0, "E", 0.1)] * 10,  # ten 0.1 rows net to 1, not 10 x round(0.1) = 0
        ("7", "BTC", "C", SEP, 1000.0, "E", 0.4),  # -> 0: nothing to file
        *[
            ("7", "BTC", "C", SEP, 2000.0, "E", p) for p in (0.2, 0.7, 0.6)
        ],  # 1.4999999999999998 in floats -> 2
    ]
    out = aggregate_positions(_positions(rows), 1)
    assert [(r[3], r[2], r[6], r[7]) for r in _rows(out)] == [
        (None, JUN, 3, 0),
        ("C", JUN, 0, 3),
        ("P", JUN, 2, 0),
        ("C", SEP, 2, 0),
        ("P", SEP, 1, 0),
    ]


def test_aggregate_output_formats_into_records():
    out = aggregate_positions(_positions(POSITION_ROWS), LEVELS)
    row = out.iloc[1]
    rec = PositionRecord(
        reporting_firm="123",
        account=row["account_id"],
        report_date=REPORT_DATE,
        exchange="DB",
        put_call=row["put_call"],
        commodity=row["commodity"],
        expiration=row["expiration"],
        strike=strike_units(row["strike"], 0),
        exercise_style=row["exercise_style"],
        long=row["long"],
        short=row["short"],
    )
    assert (
        format_record(rec)[7:65]
        == "000000001001"
        + "20260612"
        + "DB"
        + "C"
        + "BTC  "
        + "20260626"
        + "0100000E"
        + "0000000"
        + "0000002"
    )


@pytest.mark.parametrize(
    ("rows", "level", "message"),
    [
        (POSITION_ROWS, {"BTC": 25}, "ETH"),  # a commodity without a level
        ([("1", "BTC", "X", JUN, 1.0, "E", 1.0)], 1, "C/P"),
        ([("1", "BTC", None, JUN, 1.0, None, 1.0)], 1, "strike"),  # a future with a strike
        ([("1", "BTC", None, JUN, NAN, None, NAN)], 1, "position"),
        (
            [("1", "BTC", "C", JUN, 1.0, "E", 1.0), ("1", "BTC", "C", JUN, 1.0, "A", 1.0)],
            1,
            "exercise_style",
        ),
        ([("1", "BTC", None, JUN, NAN, None, 1.0)], 0, "positive"),
    ],
)
def test_aggregate_rejects_bad_input(rows, level, message):
    with pytest.raises(RecordError, match=message):
        aggregate_positions(_positions(rows), level)


def test_aggregate_requires_its_columns():
    with pytest.raises(RecordError, match="position"):
        aggregate_positions(_positions(POSITION_ROWS).drop(columns="position"), LEVELS)
