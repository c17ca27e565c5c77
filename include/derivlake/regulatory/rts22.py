"""MiFIR RTS 22 transaction reports (domain.md section 5): build, validate and read back the XML file.

A file is the ISO 20022 business data envelope (head.003) holding the application header (head.001) and
one auth.016.001.01 FinInstrmRptgTxRpt with a `<Tx>` per execution, `<New>` or `<Cxl>`. It is validated
against the project's own schemas in ``xsd/`` (ESMA's are not available offline) and then against the
rules a schema cannot express: LEI and ISIN check digits, MIC and CFI formats, UTC times, unique TxIds.
The bytes depend only on the rows, their order and the header, so a rerun reproduces the filed file.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lxml import etree

from derivlake.regulatory.identifiers import (
    cfi_is_valid,
    isin_is_valid,
    iso_utc,
    lei_is_valid,
    mic_is_valid,
)

if TYPE_CHECKING:
    import pandas as pd

NS_BIZ = "urn:iso:std:iso:20022:tech:xsd:head.003.001.01"
NS_HDR = "urn:iso:std:iso:20022:tech:xsd:head.001.001.01"
NS_DOC = "urn:iso:std:iso:20022:tech:xsd:auth.016.001.01"
NSMAP = {"biz": NS_BIZ, "hdr": NS_HDR, "doc": NS_DOC}
MESSAGE_DEFINITION = "auth.016.001.01"

SCHEMA_DIR = Path(__file__).with_name("xsd")
SCHEMA_FILE = SCHEMA_DIR / "head.003.001.01_derivlake.xsd"

ACTIONS = {"NEW": "New", "CXL": "Cxl"}
AMOUNT_DECIMALS = 13
"""fractionDigits of ActiveOrHistoricCurrencyAnd13DecimalAmount, the type of every price and strike."""
NUMBER_DECIMALS = 17
"""fractionDigits of DecimalNumber: quantities and price multipliers."""
_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")


@dataclass(frozen=True)
class Rts22Header:
    """The application header: who sends the file to which authority, its id and creation time."""

    sender_lei: str
    receiver: str
    """The competent authority's id, e.g. a country code ('DE') or 'ESMA'."""
    message_id: str
    created: datetime
    """Naive UTC; the only time in the file that is not a row's, so the caller fixes it for reruns."""


# ---------------------------------------------------------------------------------------------------------
# Building


def decimal_text(x: float) -> str:
    """The shortest text that round-trips ``x``, never in exponent form: 1e-05 -> '0.00001', 1e5 -> '100000'."""
    if isinstance(x, Integral):
        return str(int(x))
    value = float(x)  # numpy scalars' repr is 'np.float64(...)'
    if not math.isfinite(value):
        raise ValueError(f"a reported decimal must be finite, got {x!r}")
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _amount(x: float) -> str:
    """A price or strike: ISO 20022 amounts hold 13 decimals, so float noise beyond them is rounded off."""
    return decimal_text(round(float(x), AMOUNT_DECIMALS))


def _number(x: float) -> str:
    """A quantity or multiplier: a DecimalNumber holds 17 decimals."""
    return decimal_text(round(float(x), NUMBER_DECIMALS))


def _bool(flag: Any) -> str:
    return "true" if bool(flag) else "false"


def _missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA: what a frame holds for an absent value."""
    try:
        return value is None or bool(value != value)
    except TypeError:  # pd.NA
        return True


def _required(row: dict[str, Any], column: str) -> Any:
    value = row.get(column)
    if _missing(value):
        raise ValueError(f"transaction {row.get('tx_id')!r}: column {column!r} is required")
    return value


def _optional(row: dict[str, Any], column: str, default: Any = None) -> Any:
    value = row.get(column, default)
    return default if _missing(value) else value


def _date_text(value: date | str) -> str:
    if isinstance(value, str):  # already ISO 8601; the schema checks it
        return value
    return (value.date() if isinstance(value, datetime) else value).isoformat()


def _sub(
    parent: etree._Element, path: str, text: str | None = None, ns: str = NS_DOC, **attrib: str
) -> etree._Element:
    """Append the chain of elements ``path`` ('A/B/C') under ``parent``; text and attributes on the last."""
    el = parent
    for name in path.split("/"):
        el = etree.SubElement(el, f"{{{ns}}}{name}")
    if text is not None:
        el.text = text
    for key, value in attrib.items():
        el.set(key, value)
    return el


def _org_id(parent: etree._Element, name: str, identifier: str) -> None:
    _sub(parent, f"{name}/OrgId/Id/OrgId/Othr/Id", identifier, ns=NS_HDR)


def _app_header(parent: etree._Element, header: Rts22Header) -> None:
    app = etree.SubElement(parent, f"{{{NS_HDR}}}AppHdr", nsmap={None: NS_HDR})
    _org_id(app, "Fr", header.sender_lei)
    _org_id(app, "To", header.receiver)
    _sub(app, "BizMsgIdr", header.message_id, ns=NS_HDR)
    _sub(app, "MsgDefIdr", MESSAGE_DEFINITION, ns=NS_HDR)
    _sub(app, "CreDt", iso_utc(header.created), ns=NS_HDR)


def _party(parent: etree._Element, name: str, row: dict[str, Any], side: str) -> None:
    """Buyer or seller: its LEI, else the venue's MIC (a counterparty unknown behind a CCP)."""
    lei, mic = _optional(row, f"{side}_lei"), _optional(row, f"{side}_mic")
    if lei is not None:
        _sub(parent, f"{name}/AcctOwnr/Id/LEI", str(lei))
    elif mic is not None:
        _sub(parent, f"{name}/AcctOwnr/Id/MIC", str(mic))
    else:
        raise ValueError(f"transaction {row.get('tx_id')!r}: {side}_lei or {side}_mic is required")


def _instrument(parent: etree._Element, row: dict[str, Any]) -> None:
    """The ISIN when the instrument has one (fields 42-56 then stay empty), else its description."""
    fin = _sub(parent, "FinInstrm")
    isin = _optional(row, "isin")
    if isin is not None:
        _sub(fin, "Id", str(isin))
        return
    other = _sub(fin, "Othr")
    general = _sub(other, "FinInstrmGnlAttrbts")
    _sub(general, "FullNm", str(_required(row, "full_name")))
    _sub(general, "ClssfctnTp", str(_required(row, "cfi")))
    _sub(general, "NtnlCcy", str(_required(row, "notional_ccy")))
    deriv = _sub(other, "DerivInstrmAttrbts")
    expiry = _optional(row, "expiry")
    if expiry is not None:  # a perpetual has none
        _sub(deriv, "XpryDt", _date_text(expiry))
    _sub(deriv, "PricMltplr", _number(_required(row, "price_multiplier")))
    _sub(deriv, "UndrlygInstrm/Othr/Sngl/Indx/Nm/RefRate/Nm", str(_required(row, "underlying_index")))
    option_type = _optional(row, "option_type")
    if option_type is not None:
        _sub(deriv, "OptnTp", str(option_type))
    strike = _optional(row, "strike")
    if strike is not None:
        ccy = str(_required(row, "strike_ccy"))
        _sub(deriv, "StrkPric/Pric/MntryVal/Amt", _amount(strike), Ccy=ccy)
    style = _optional(row, "exercise_style")
    if style is not None:
        _sub(deriv, "OptnExrcStyle", str(style))
    _sub(deriv, "DlvryTp", str(_required(row, "delivery_type")))


def _new(parent: etree._Element, row: dict[str, Any]) -> None:
    new = _sub(parent, "New")
    _sub(new, "TxId", str(_required(row, "tx_id")))
    _sub(new, "ExctgPty", str(_required(row, "executing_lei")))
    _sub(new, "InvstmtPtyInd", _bool(_optional(row, "investment_firm", True)))
    _sub(new, "SubmitgPty", str(_required(row, "submitting_lei")))
    _party(new, "Buyr", row, "buyer")
    _party(new, "Sellr", row, "seller")
    _sub(new, "OrdrTrnsmssn/TrnsmssnInd", _bool(_optional(row, "transmission", False)))
    tx = _sub(new, "Tx")
    _sub(tx, "TradDt", iso_utc(_required(row, "trade_ts")))
    _sub(tx, "TradgCpcty", str(_required(row, "capacity")))
    _sub(tx, "Qty/Unit", _number(_required(row, "quantity")))
    ccy = str(_required(row, "price_ccy"))
    _sub(tx, "Pric/Pric/MntryVal/Amt", _amount(_required(row, "price")), Ccy=ccy)
    _sub(tx, "TradVn", str(_required(row, "venue_mic")))
    for column, name in (("branch_country", "CtryOfBrnch"), ("venue_trade_id", "TradPlcMtchgId")):
        value = _optional(row, column)
        if value is not None:
            _sub(tx, name, str(value))
    _instrument(new, row)
    _sub(new, "ExctgPrsn/Algo", str(_required(row, "algo")))
    _sub(new, "AddtlAttrbts/SctiesFincgTxInd", _bool(_optional(row, "sfti", False)))


def _cancel(parent: etree._Element, row: dict[str, Any]) -> None:
    cxl = _sub(parent, "Cxl")
    _sub(cxl, "TxId", str(_required(row, "tx_id")))
    _sub(cxl, "ExctgPty", str(_required(row, "executing_lei")))


def build_rts22(transactions: pd.DataFrame, header: Rts22Header) -> bytes:
    """The RTS 22 file of ``transactions`` in their row order, UTF-8 with an XML declaration.

    One row per execution: action ('NEW'/'CXL'), tx_id, executing_lei, submitting_lei, buyer_lei or
    buyer_mic, seller_lei or seller_mic, trade_ts, capacity, quantity, price, price_ccy, venue_mic,
    branch_country, venue_trade_id, isin (else full_name, cfi, notional_ccy, expiry, price_multiplier,
    underlying_index, option_type, strike, strike_ccy, exercise_style, delivery_type), algo; None/NaN/NaT
    is absent. A CXL row uses only tx_id and executing_lei. Optional booleans default to an investment
    firm (``investment_firm`` True) that transmitted no order (``transmission`` False), no securities
    financing (``sfti`` False). Prices and strikes are rounded to the 13 decimals of an ISO 20022 amount.
    An empty frame is an error: the schema requires a `<Tx>`, and a day without executions files nothing.
    """
    if transactions.empty:
        raise ValueError("an RTS 22 file holds at least one transaction")
    root = etree.Element(f"{{{NS_BIZ}}}BizData", nsmap={None: NS_BIZ})
    _app_header(_sub(root, "Hdr", ns=NS_BIZ), header)
    pyld = _sub(root, "Pyld", ns=NS_BIZ)
    document = etree.SubElement(pyld, f"{{{NS_DOC}}}Document", nsmap={None: NS_DOC})
    report = _sub(document, "FinInstrmRptgTxRpt")
    for row in transactions.to_dict("records"):
        action = row.get("action")
        if action not in ACTIONS:
            raise ValueError(f"transaction {row.get('tx_id')!r}: action is 'NEW' or 'CXL', got {action!r}")
        (_new if action == "NEW" else _cancel)(_sub(report, "Tx"), row)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# ---------------------------------------------------------------------------------------------------------
# Validation


def _parser() -> etree.XMLParser:
    """No network, no external entities: a report or schema is only ever read from local bytes."""
    return etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)


@functools.cache
def load_schema() -> etree.XMLSchema:
    """The head.003 envelope schema; it imports head.001 and auth.016 from SCHEMA_DIR by relative path."""
    return etree.XMLSchema(etree.parse(str(SCHEMA_FILE), _parser()))


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _where(el: etree._Element) -> str:
    """'line N: Buyr/AcctOwnr/Id/LEI (New TX1)': the element's path below its New, Cxl or AppHdr."""
    names, anchor = [], el
    while anchor is not None and _local(anchor) not in ("New", "Cxl", "AppHdr"):
        names.append(_local(anchor))
        anchor = anchor.getparent()
    path = "/".join(reversed(names))
    if anchor is None:
        return f"line {el.sourceline}: {path}"
    tx_id = anchor.findtext(f"{{{NS_DOC}}}TxId") if _local(anchor) != "AppHdr" else None
    context = f"{_local(anchor)} {tx_id}" if tx_id else _local(anchor)
    return f"line {el.sourceline}: {path} ({context})"


def _lei_problem(value: str) -> str | None:
    if lei_is_valid(value):
        return None
    if re.fullmatch(r"[A-Z0-9]{18}[0-9]{2}", value):
        return f"LEI {value} fails its ISO 17442 check digits"
    return f"LEI {value!r} is not 18 characters [A-Z0-9] and 2 check digits"


def _isin_problem(value: str) -> str | None:
    if isin_is_valid(value):
        return None
    if re.fullmatch(r"[A-Z]{2}[A-Z0-9]{9}[0-9]", value):
        return f"ISIN {value} fails its ISO 6166 check digit"
    return f"ISIN {value!r} is not 2 letters, 9 characters [A-Z0-9] and a check digit"


def _mic_problem(value: str) -> str | None:
    return None if mic_is_valid(value) else f"MIC {value!r} is not 4 characters [A-Z0-9]"


def _cfi_problem(value: str) -> str | None:
    if cfi_is_valid(value):
        return None
    return f"CFI {value!r} is not 6 uppercase letters starting with an ISO 10962 category"


def _utc_problem(value: str) -> str | None:
    if _UTC.fullmatch(value):
        try:
            datetime.fromisoformat(value[:-1])
            return None
        except ValueError:
            pass
    return f"date-time {value!r} is not ISO 8601 UTC (YYYY-MM-DDTHH:MM:SS[.ffffff]Z)"


_RULES = (
    ("//hdr:AppHdr/hdr:Fr/hdr:OrgId/hdr:Id/hdr:OrgId/hdr:Othr/hdr:Id", _lei_problem),
    ("//doc:ExctgPty | //doc:SubmitgPty | //doc:AcctOwnr/doc:Id/doc:LEI", _lei_problem),
    ("//doc:AcctOwnr/doc:Id/doc:MIC | //doc:New/doc:Tx/doc:TradVn", _mic_problem),
    ("//doc:FinInstrm/doc:Id | //doc:FinInstrmGnlAttrbts/doc:Id | //doc:ISIN", _isin_problem),
    ("//doc:ClssfctnTp", _cfi_problem),
    ("//doc:New/doc:Tx/doc:TradDt | //hdr:AppHdr/hdr:CreDt", _utc_problem),
)


def _business_errors(root: etree._Element) -> list[str]:
    found: list[tuple[int, str]] = []
    for xpath, problem in _RULES:
        for el in root.xpath(xpath, namespaces=NSMAP):
            message = problem((el.text or "").strip())
            if message:
                found.append((el.sourceline or 0, f"{_where(el)}: {message}"))
    seen: Counter[tuple[str, str]] = Counter()
    for el in root.xpath("//doc:FinInstrmRptgTxRpt/doc:Tx/*/doc:TxId", namespaces=NSMAP):
        key = (_local(el.getparent()), el.text or "")
        seen[key] += 1
        if seen[key] == 2:
            found.append((el.sourceline or 0, f"{_where(el)}: TxId {key[1]} is reported twice as {key[0]}"))
    return [message for _, message in sorted(found, key=lambda item: item[0])]


def validate_rts22(xml: bytes) -> list[str]:
    """Every schema error ('line N: message') then every business-rule error; [] for a valid file."""
    try:
        root = etree.fromstring(xml, _parser())
    except etree.XMLSyntaxError as exc:
        return [f"line {exc.lineno}: {exc.msg}"]
    schema = load_schema()
    errors = [] if schema.validate(root) else [f"line {e.line}: {e.message}" for e in schema.error_log]
    return errors + _business_errors(root)


def parse_transaction_ids(xml: bytes) -> list[tuple[str, str]]:
    """(action 'NEW' or 'CXL', TxId) of every `<Tx>` in file order."""
    root = etree.fromstring(xml, _parser())
    action_of = {name: action for action, name in ACTIONS.items()}
    return [
        (action_of[_local(el.getparent())], el.text or "")
        for el in root.xpath("//doc:FinInstrmRptgTxRpt/doc:Tx/*/doc:TxId", namespaces=NSMAP)
    ]
