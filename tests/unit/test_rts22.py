"""RTS 22 files: a built file is schema- and rule-valid, reads back exactly, is byte-stable, and every kind
of bad identifier, time or structure is reported by element and value."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest
from lxml import etree

from derivlake.regulatory.rts22 import (
    SCHEMA_DIR,
    Rts22Header,
    build_rts22,
    decimal_text,
    load_schema,
    parse_transaction_ids,
    validate_rts22,
)

BIZ = "urn:iso:std:iso:20022:tech:xsd:head.003.001.01"
HDR = "urn:iso:std:iso:20022:tech:xsd:head.001.001.01"
DOC = "urn:iso:std:iso:20022:tech:xsd:auth.016.001.01"
NS = {"b": BIZ, "h": HDR, "d": DOC}
TX = "/b:BizData/b:Pyld/d:Document/d:FinInstrmRptgTxRpt/d:Tx"


def with_check_digits(prefix18: str) -> str:
    """ISO 7064 MOD 97-10 written out here, independently of the code under test."""
    number = ""
    for ch in prefix18 + "00":
        number += ch if ch.isdigit() else str(ord(ch) - ord("A") + 10)
    return prefix18 + f"{98 - int(number) % 97:02d}"


DESK = with_check_digits("529900DERIVLAKEDSK")
BROKER = with_check_digits("5493000BROKERTEST0")
HEADER = Rts22Header(
    sender_lei=DESK, receiver="DE", message_id="DLK-RTS22-20250102-001", created=datetime(2025, 1, 3, 6)
)

OPTION_TS = datetime(2025, 1, 2, 9, 15, 30, 123456)
FUTURE_TS = datetime(2025, 1, 2, 14, 0, 0, 7)


def transactions() -> pd.DataFrame:
    option = {
        "action": "NEW",
        "tx_id": "DLK20250102000001",
        "executing_lei": DESK,
        "submitting_lei": DESK,
        "buyer_lei": DESK,
        "buyer_mic": None,
        "seller_lei": None,
        "seller_mic": "XOFF",
        "trade_ts": OPTION_TS,
        "capacity": "DEAL",
        "quantity": 0.1,
        "price": 5e-05,
        "price_ccy": "BTC",
        "venue_mic": "XOFF",
        "branch_country": "DE",
        "venue_trade_id": "BTC-312345678",
        "isin": None,
        "full_name": "BTC-28MAR25-100000-C",
        "cfi": "OCEMCS",
        "notional_ccy": "USD",
        "expiry": date(2025, 3, 28),
        "price_multiplier": 1.0,
        "underlying_index": "btc_usd",
        "option_type": "CALL",
        "strike": 100000.0,
        "strike_ccy": "USD",
        "exercise_style": "EURO",
        "delivery_type": "CASH",
        "algo": "DLKHEDGER1",
    }
    perpetual = option | {
        "tx_id": "DLK20250102000002",
        "buyer_lei": None,
        "buyer_mic": "XOFF",
        "seller_lei": DESK,
        "seller_mic": None,
        "trade_ts": FUTURE_TS,
        "quantity": 12340.0,
        "price": 97123.5,
        "price_ccy": "USD",
        "venue_trade_id": "BTC-312345679",
        "full_name": "BTC-PERPETUAL",
        "cfi": "FFMCSX",
        "expiry": None,
        "price_multiplier": 10.0,
        "option_type": None,
        "strike": None,
        "strike_ccy": None,
        "exercise_style": None,
    }
    cancel = {"action": "CXL", "tx_id": "DLK20250101000042", "executing_lei": DESK} | {
        k: None for k in option if k not in ("action", "tx_id", "executing_lei")
    }
    return pd.DataFrame([option, perpetual, cancel])


def texts(xml: bytes, xpath: str) -> list[str]:
    return [el.text for el in etree.fromstring(xml).xpath(xpath, namespaces=NS)]


def text(xml: bytes, xpath: str) -> str:
    found = texts(xml, xpath)
    assert len(found) == 1, (xpath, found)
    return found[0]


@pytest.fixture(scope="module")
def xml() -> bytes:
    return build_rts22(transactions(), HEADER)


def test_built_file_is_valid(xml):
    assert validate_rts22(xml) == []
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<BizData")
    assert b"\n  <Hdr>" in xml  # pretty-printed


def test_transaction_ids_in_file_order(xml):
    assert parse_transaction_ids(xml) == [
        ("NEW", "DLK20250102000001"),
        ("NEW", "DLK20250102000002"),
        ("CXL", "DLK20250101000042"),
    ]


def test_header(xml):
    root = etree.fromstring(xml)
    assert root.tag == f"{{{BIZ}}}BizData"
    app = "/b:BizData/b:Hdr/h:AppHdr"
    assert text(xml, f"{app}/h:Fr/h:OrgId/h:Id/h:OrgId/h:Othr/h:Id") == DESK
    assert text(xml, f"{app}/h:To/h:OrgId/h:Id/h:OrgId/h:Othr/h:Id") == "DE"
    assert text(xml, f"{app}/h:BizMsgIdr") == "DLK-RTS22-20250102-001"
    assert text(xml, f"{app}/h:MsgDefIdr") == "auth.016.001.01"
    assert text(xml, f"{app}/h:CreDt") == "2025-01-03T06:00:00.000000Z"


def test_option_transaction_fields(xml):
    new = f"{TX}[1]/d:New"
    assert text(xml, f"{new}/d:TxId") == "DLK20250102000001"
    assert text(xml, f"{new}/d:ExctgPty") == DESK
    assert text(xml, f"{new}/d:InvstmtPtyInd") == "true"
    assert text(xml, f"{new}/d:SubmitgPty") == DESK
    assert text(xml, f"{new}/d:Buyr/d:AcctOwnr/d:Id/d:LEI") == DESK
    assert text(xml, f"{new}/d:Sellr/d:AcctOwnr/d:Id/d:MIC") == "XOFF"
    assert text(xml, f"{new}/d:OrdrTrnsmssn/d:TrnsmssnInd") == "false"
    assert text(xml, f"{new}/d:Tx/d:TradDt") == "2025-01-02T09:15:30.123456Z"
    assert text(xml, f"{new}/d:Tx/d:TradgCpcty") == "DEAL"
    assert text(xml, f"{new}/d:Tx/d:Qty/d:Unit") == "0.1"
    amt = etree.fromstring(xml).xpath(f"{new}/d:Tx/d:Pric/d:Pric/d:MntryVal/d:Amt", namespaces=NS)[0]
    assert (amt.text, amt.get("Ccy")) == ("0.00005", "BTC")  # 5e-05 without an exponent
    assert text(xml, f"{new}/d:Tx/d:TradVn") == "XOFF"
    assert text(xml, f"{new}/d:Tx/d:CtryOfBrnch") == "DE"
    assert text(xml, f"{new}/d:Tx/d:TradPlcMtchgId") == "BTC-312345678"
    general = f"{new}/d:FinInstrm/d:Othr/d:FinInstrmGnlAttrbts"
    assert text(xml, f"{general}/d:FullNm") == "BTC-28MAR25-100000-C"
    assert text(xml, f"{general}/d:ClssfctnTp") == "OCEMCS"
    assert text(xml, f"{general}/d:NtnlCcy") == "USD"
    deriv = f"{new}/d:FinInstrm/d:Othr/d:DerivInstrmAttrbts"
    assert text(xml, f"{deriv}/d:XpryDt") == "2025-03-28"
    assert text(xml, f"{deriv}/d:PricMltplr") == "1"
    assert text(xml, f"{deriv}/d:UndrlygInstrm/d:Othr/d:Sngl/d:Indx/d:Nm/d:RefRate/d:Nm") == "btc_usd"
    assert text(xml, f"{deriv}/d:OptnTp") == "CALL"
    strike = etree.fromstring(xml).xpath(f"{deriv}/d:StrkPric/d:Pric/d:MntryVal/d:Amt", namespaces=NS)[0]
    assert (strike.text, strike.get("Ccy")) == ("100000", "USD")
    assert text(xml, f"{deriv}/d:OptnExrcStyle") == "EURO"
    assert text(xml, f"{deriv}/d:DlvryTp") == "CASH"
    assert text(xml, f"{new}/d:ExctgPrsn/d:Algo") == "DLKHEDGER1"
    assert text(xml, f"{new}/d:AddtlAttrbts/d:SctiesFincgTxInd") == "false"


def test_perpetual_and_cancellation(xml):
    new = f"{TX}[2]/d:New"
    assert text(xml, f"{new}/d:Buyr/d:AcctOwnr/d:Id/d:MIC") == "XOFF"
    assert text(xml, f"{new}/d:Sellr/d:AcctOwnr/d:Id/d:LEI") == DESK
    assert text(xml, f"{new}/d:Tx/d:TradDt") == "2025-01-02T14:00:00.000007Z"
    assert text(xml, f"{new}/d:Tx/d:Qty/d:Unit") == "12340"
    assert text(xml, f"{new}/d:Tx/d:Pric/d:Pric/d:MntryVal/d:Amt") == "97123.5"
    deriv = f"{new}/d:FinInstrm/d:Othr/d:DerivInstrmAttrbts"
    assert text(xml, f"{deriv}/d:PricMltplr") == "10"
    assert text(xml, f"{new}/d:FinInstrm/d:Othr/d:FinInstrmGnlAttrbts/d:ClssfctnTp") == "FFMCSX"
    # a perpetual has no expiry, no option type, strike or style (NaN/None in the frame)
    for absent in ("XpryDt", "OptnTp", "StrkPric", "OptnExrcStyle"):
        assert texts(xml, f"{deriv}/d:{absent}") == []
    cxl = f"{TX}[3]/d:Cxl"
    assert [etree.QName(el).localname for el in etree.fromstring(xml).xpath(f"{cxl}/*", namespaces=NS)] == [
        "TxId",
        "ExctgPty",
    ]
    assert text(xml, f"{cxl}/d:TxId") == "DLK20250101000042"
    assert text(xml, f"{cxl}/d:ExctgPty") == DESK


def test_same_input_same_bytes(xml):
    assert build_rts22(transactions(), HEADER) == xml
    assert build_rts22(transactions().copy(), HEADER) == build_rts22(transactions(), HEADER)


def test_isin_replaces_the_description():
    frame = transactions()
    frame.loc[0, "isin"] = "DE000BAY0017"
    xml = build_rts22(frame, HEADER)
    assert validate_rts22(xml) == []
    assert text(xml, f"{TX}[1]/d:New/d:FinInstrm/d:Id") == "DE000BAY0017"
    assert texts(xml, f"{TX}[1]/d:New/d:FinInstrm/d:Othr") == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0001, "0.0001"),
        (1e-05, "0.00001"),
        (100000.0, "100000"),
        (97123.5, "97123.5"),
        (0.1, "0.1"),
        (1e22, "10000000000000000000000"),
        (1.5e-10, "0.00000000015"),
        (0.0, "0"),
        (-0.0, "0"),
        (3, "3"),
    ],
)
def test_decimal_text(value, expected):
    assert decimal_text(value) == expected


def test_computed_price_rounded_to_the_amount_type():
    # a coin price times an index can carry 14+ decimals; ISO 20022 amounts hold 13 (ESMA rejects more)
    frame = transactions()
    frame.loc[1, "price"] = 97.12345678901234
    xml = build_rts22(frame, HEADER)
    assert text(xml, f"{TX}[2]/d:New/d:Tx/d:Pric/d:Pric/d:MntryVal/d:Amt") == "97.1234567890123"
    assert validate_rts22(xml) == []
    # the schema itself refuses a 14th decimal
    edited = xml.replace(b">97.1234567890123<", b">97.12345678901234<")
    assert edited != xml
    assert any("Amt" in e and "97.12345678901234" in e for e in validate_rts22(edited))


def test_decimal_text_rejects_nan():
    with pytest.raises(ValueError):
        decimal_text(float("nan"))


# ---------------------------------------------------------------------------------------------------------
# Errors


def errors_for(**changes) -> list[str]:
    frame = transactions()
    for column, value in changes.items():
        frame.loc[0, column] = value
    return validate_rts22(build_rts22(frame, HEADER))


def test_bad_lei_check_digits_named():
    bad = DESK[:-1] + str((int(DESK[-1]) + 1) % 10)
    errors = errors_for(executing_lei=bad)
    assert len(errors) == 1  # the pattern holds: only the check-digit rule catches it
    assert "ExctgPty" in errors[0] and bad in errors[0] and "ISO 17442 check digits" in errors[0]
    assert "DLK20250102000001" in errors[0]


def test_bad_buyer_and_sender_leis_named():
    bad = BROKER[:-2] + f"{(int(BROKER[-2:]) + 1) % 100:02d}"
    errors = errors_for(buyer_lei=bad)
    assert len(errors) == 1 and "Buyr/AcctOwnr/Id/LEI" in errors[0] and bad in errors[0]
    header = Rts22Header(sender_lei=bad, receiver="DE", message_id="X", created=datetime(2025, 1, 3))
    errors = validate_rts22(build_rts22(transactions(), header))
    assert len(errors) == 1 and "Fr/OrgId/Id/OrgId/Othr/Id" in errors[0] and bad in errors[0]


def test_lowercase_mic_named():
    errors = errors_for(venue_mic="xoff")
    assert any("TradVn" in e and "xoff" in e and "MIC" in e for e in errors)  # the business rule
    assert any("TradVn" in e and "pattern" in e for e in errors)  # and the schema


def test_non_utc_timestamp_named(xml):
    edited = xml.replace(b"2025-01-02T09:15:30.123456Z", b"2025-01-02T10:15:30.123456+01:00")
    assert edited != xml
    errors = validate_rts22(edited)
    assert any("TradDt" in e and "2025-01-02T10:15:30.123456+01:00" in e and "UTC" in e for e in errors)


def test_malformed_cfi_named():
    errors = errors_for(cfi="ZCEMCS")  # 6 letters, so the schema accepts it; Z is no ISO 10962 category
    assert len(errors) == 1 and "ClssfctnTp" in errors[0] and "ZCEMCS" in errors[0]
    errors = errors_for(cfi="OCEM1S")
    assert any("ClssfctnTp" in e and "OCEM1S" in e for e in errors)


def test_bad_isin_named():
    errors = errors_for(isin="US0378331006")
    assert len(errors) == 1 and "FinInstrm/Id" in errors[0] and "US0378331006" in errors[0]


def test_schema_violations_reported(xml):
    errors = errors_for(capacity="XXXX")
    assert errors and all("TradgCpcty" in e for e in errors)
    assert errors[0].startswith("line ")
    # a required element removed from the bytes
    edited = xml.replace(b"<TradVn>XOFF</TradVn>", b"", 1)
    assert edited != xml
    errors = validate_rts22(edited)
    assert len(errors) == 1 and "TradVn" in errors[0] and "Expected" in errors[0]


def test_duplicate_tx_id_per_action():
    frame = transactions()
    frame.loc[1, "tx_id"] = frame.loc[0, "tx_id"]
    errors = validate_rts22(build_rts22(frame, HEADER))
    assert len(errors) == 1 and "DLK20250102000001" in errors[0] and "twice" in errors[0]
    # cancelling and re-reporting the same transaction in one file is allowed
    frame = transactions()
    frame.loc[2, "tx_id"] = frame.loc[0, "tx_id"]
    assert validate_rts22(build_rts22(frame, HEADER)) == []


def test_unparseable_file():
    errors = validate_rts22(b"<BizData xmlns='urn:iso:std:iso:20022:tech:xsd:head.003.001.01'>")
    assert len(errors) == 1 and errors[0].startswith("line ")


def test_build_rejects_bad_rows():
    with pytest.raises(ValueError, match="action"):
        build_rts22(transactions().assign(action="MODI"), HEADER)
    with pytest.raises(ValueError, match="buyer"):
        frame = transactions()
        frame.loc[0, "buyer_lei"] = None
        build_rts22(frame, HEADER)
    with pytest.raises(ValueError, match="at least one"):
        build_rts22(transactions().iloc[0:0], HEADER)


def test_schema_is_local():
    schema = load_schema()
    assert isinstance(schema, etree.XMLSchema) and load_schema() is schema
    files = sorted(p.name for p in SCHEMA_DIR.glob("*.xsd"))
    assert files == [
        "auth.016.001.01_derivlake.xsd",
        "head.001.001.01_derivlake.xsd",
        "head.003.001.01_derivlake.xsd",
    ]
    xs = "{http://www.w3.org/2001/XMLSchema}"
    locations = []
    for name in files:
        tree = etree.parse(str(SCHEMA_DIR / name))
        for el in tree.iter(f"{xs}import", f"{xs}include", f"{xs}redefine"):
            locations.append(el.get("schemaLocation"))
    assert sorted(locations) == ["auth.016.001.01_derivlake.xsd", "head.001.001.01_derivlake.xsd"]
