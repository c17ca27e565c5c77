"""LEI, ISIN, MIC and CFI checks against published identifiers, and the UTC time format of RTS 22."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from derivlake.regulatory.identifiers import (
    cfi_for,
    cfi_is_valid,
    isin_is_valid,
    iso_utc,
    lei_check_digits,
    lei_is_valid,
    mic_is_valid,
)

# real LEIs from the GLEIF register
REAL_LEIS = ["5493001KJTIIGC8Y1R12", "529900T8BM49AURSDO55", "7LTWFZYICNSX8D621K86"]
# real ISINs: Apple, Bayer, BAE Systems, and the Wikipedia ISO 6166 example with letters
REAL_ISINS = ["US0378331005", "DE000BAY0017", "GB0002634946", "AU0000XVGZA3"]


def _substitute(text: str, i: int) -> str:
    """``text`` with character i replaced by another of the same class (digit by digit, letter by letter)."""
    ch = text[i]
    other = str((int(ch) + 1) % 10) if ch.isdigit() else chr((ord(ch) - ord("A") + 1) % 26 + ord("A"))
    return text[:i] + other + text[i + 1 :]


@pytest.mark.parametrize("lei", REAL_LEIS)
def test_real_leis_are_valid_and_their_check_digits_recomputed(lei):
    assert lei_is_valid(lei)
    assert lei_check_digits(lei[:18]) == lei[18:]


@pytest.mark.parametrize("lei", REAL_LEIS)
def test_every_single_substitution_in_an_lei_is_caught(lei):
    # same-class substitution changes the number by d x 10^k with 0 < |d| < 97: never a multiple of 97
    for i in range(20):
        assert not lei_is_valid(_substitute(lei, i)), (lei, i)


def test_lei_shape():
    assert not lei_is_valid("5493001KJTIIGC8Y1R1")  # 19 characters
    assert not lei_is_valid("5493001KJTIIGC8Y1R120")
    assert not lei_is_valid("5493001kjtiigc8y1r12")  # lowercase
    assert not lei_is_valid("5493001KJTIIGC8Y1RA2")  # a letter among the check digits
    assert not lei_is_valid(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        lei_check_digits("5493001KJTIIGC8Y1")
    assert lei_check_digits("0" * 18) == "98"  # 0 mod 97 -> 98 - 0
    # check digits below 10 keep their leading zero (98 - 89, computed once outside this module)
    assert lei_check_digits("529900TESTDESK0020") == "09"
    assert lei_is_valid("529900TESTDESK002009")


@pytest.mark.parametrize("isin", REAL_ISINS)
def test_real_isins_are_valid(isin):
    assert isin_is_valid(isin)


def test_isin_check_digit_and_shape():
    assert not isin_is_valid("US0378331006")
    assert not isin_is_valid("DE000BAY0018")
    for isin in REAL_ISINS:  # any other last digit fails the Luhn check
        for d in "0123456789":
            if d != isin[-1]:
                assert not isin_is_valid(isin[:-1] + d), isin[:-1] + d
    assert not isin_is_valid("us0378331005")
    assert not isin_is_valid("U10378331005")  # country code must be letters
    assert not isin_is_valid("US037833100")
    assert not isin_is_valid("US037833100X")  # check character must be a digit


def test_mic_format():
    assert mic_is_valid("XEUR")
    assert mic_is_valid("XOFF")
    assert mic_is_valid("4AXE")
    for bad in ("xeur", "XEU", "XEURO", "XE-R", "", None):
        assert not mic_is_valid(bad), bad  # type: ignore[arg-type]


def test_cfi_format_and_category():
    for good in ("ESVUFR", "DBFTFB", "OCEMCS", "FFICSX", "SRCCSP", "MMMXXX", "HTBBCN"):
        assert cfi_is_valid(good), good
    for bad in ("esvufr", "ESVUF", "ESVUFRR", "ESVUF1", "ZXXXXX", "AXXXXX", "XXXXXX", "", None):
        assert not cfi_is_valid(bad), bad  # type: ignore[arg-type]


def test_cfi_for_deribit_instruments():
    call, put, future = cfi_for("option", "call"), cfi_for("option", "put"), cfi_for("future", None)
    assert (call, put, future) == ("OCEMCS", "OPEMCS", "FFMCSX")
    for cfi in (call, put, future):
        assert cfi_is_valid(cfi)
    # listed option: category O, call/put, European, underlying others, cash, standardised
    assert call[:2] == "OC" and put[:2] == "OP"
    assert call[2:] == put[2:] == "EMCS"
    # financial future: underlying others, cash, standardised, fourth attribute not applicable
    assert future[:2] == "FF" and future[3:] == "CSX"
    assert cfi_for("option", "CALL") == call  # case of the option type does not matter
    with pytest.raises(ValueError):
        cfi_for("option", None)
    with pytest.raises(ValueError):
        cfi_for("swap", None)


def test_iso_utc_prints_microseconds_and_z():
    assert iso_utc(datetime(2025, 3, 4, 5, 6, 7)) == "2025-03-04T05:06:07.000000Z"
    assert iso_utc(datetime(2025, 3, 4, 5, 6, 7, 89)) == "2025-03-04T05:06:07.000089Z"
    assert iso_utc(datetime(2024, 12, 31, 23, 59, 59, 999999)) == "2024-12-31T23:59:59.999999Z"
    aware = datetime(2025, 3, 4, 7, 6, 7, 120000, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(aware) == "2025-03-04T05:06:07.120000Z"
