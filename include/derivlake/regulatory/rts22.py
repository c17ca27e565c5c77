"""MiFIR RTS 22 transaction reports (domain.md section 5): build, validate and read back the XML file.

A file is the ISO 20022 business data envelope (head.003) holding the application header (head.001) and
one auth.016.001.01 FinInstrmRptgTxRpt with a `<Tx>` per execution, `<New>` or `<Cxl>`. It is validated
against the project's own schemas in ``xsd/`` (ESMA's are not available offline) and then against the
rules a schema cannot express: LEI and ISIN check digits, MIC and CFI formats, UTC times, unique TxIds.
The bytes depend only on the rows, their order and the header, so a rerun reproduces the filed file.

A file is written and read in memory bounded by configuration, not by its number of transactions (a
venue-scale day is 100k+ executions, gigabytes as one lxml tree): `write_rts22` streams the rows chunk by
chunk, one `<Tx>` built, written and dropped at a time; `validate_rts22_file` and `iter_transaction_ids`
parse incrementally and hold a few transactions (`VALIDATION_BATCH`) at a time.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from io import BytesIO
from itertools import chain
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from lxml import etree

from derivlake.regulatory.identifiers import (
    cfi_is_valid,
    isin_is_valid,
    iso_utc,
    lei_is_valid,
    mic_is_valid,
)

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

NS_BIZ = "urn:iso:std:iso:20022:tech:xsd:head.003.001.01"
NS_HDR = "urn:iso:std:iso:20022:tech:xsd:head.001.001.01"
NS_DOC = "urn:iso:std:iso:20022:tech:xsd:auth.016.001.01"
NSMAP = {"biz": NS_BIZ, "hdr": NS_HDR, "doc": NS_DOC}
MESSAGE_DEFINITION = "auth.016.001.01"

SCHEMA_DIR = Path(__file__).with_name("xsd")
SQL_DIR = Path(__file__).with_name("sql")
SCHEMA_FILE = SCHEMA_DIR / "head.003.001.01_derivlake.xsd"

ACTIONS = {"NEW": "New", "CXL": "Cxl"}
AMOUNT_DECIMALS = 13
"""fractionDigits of ActiveOrHistoricCurrencyAnd13DecimalAmount, the type of every price and strike."""
NUMBER_DECIMALS = 17
"""fractionDigits of DecimalNumber: quantities and price multipliers."""
TXID_BUFFER = 50_000
"""TxIds validate_rts22_file buffers (~5 MB) before it moves them to DuckDB."""
VALIDATION_BATCH = 100
"""Transactions validate_rts22_file holds and schema-validates at a time, ~20 kB of lxml tree each: its
memory, whatever the file's size (larger batches are no faster)."""
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
    parent: etree._Element, path: str, text: str | None = None, ns: str | None = None, **attrib: str
) -> etree._Element:
    """Append the chain of elements ``path`` ('A/B/C') under ``parent``; text and attributes on the last.

    Without ``ns`` the elements are bare (no namespace): a `<Tx>` is built so, see `_transaction`."""
    el = parent
    for name in path.split("/"):
        el = etree.SubElement(el, name if ns is None else f"{{{ns}}}{name}")
    if text is not None:
        el.text = text
    for key, value in attrib.items():
        el.set(key, value)
    return el


def _org_id(parent: etree._Element, name: str, identifier: str) -> None:
    _sub(parent, f"{name}/OrgId/Id/OrgId/Othr/Id", identifier, ns=NS_HDR)


def _app_header(header: Rts22Header) -> etree._Element:
    app = etree.Element(f"{{{NS_HDR}}}AppHdr", nsmap={None: NS_HDR})
    _org_id(app, "Fr", header.sender_lei)
    _org_id(app, "To", header.receiver)
    _sub(app, "BizMsgIdr", header.message_id, ns=NS_HDR)
    _sub(app, "MsgDefIdr", MESSAGE_DEFINITION, ns=NS_HDR)
    _sub(app, "CreDt", iso_utc(header.created), ns=NS_HDR)
    return app


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
    _sub(cxl, "SubmitgPty", str(_required(row, "submitting_lei")))


def _transaction(row: dict[str, Any]) -> etree._Element:
    """The `<Tx>` of one row, its elements bare: `write_rts22` writes it inside `<Document>`, whose default
    namespace (auth.016) they take in the file. Built in that namespace, each `<Tx>` would be serialised
    with a redundant xmlns declaration of its own."""
    action = row.get("action")
    if action not in ACTIONS:
        raise ValueError(f"transaction {row.get('tx_id')!r}: action is 'NEW' or 'CXL', got {action!r}")
    tx = etree.Element("Tx")
    (_new if action == "NEW" else _cancel)(tx, row)
    return tx


_INDENT = "  "
"""libxml2's pretty-printing, which the file had when it was one tree serialised at once: two spaces a level."""


def _newline(level: int) -> str:
    return "\n" + _INDENT * level


def _indented(el: etree._Element, level: int) -> etree._Element:
    """``el``, a subtree written at depth ``level``, with the whitespace pretty-printing would give it."""
    etree.indent(el, _INDENT, level=level)
    return el


def _rows(chunks: Iterable[pd.DataFrame]) -> Iterator[dict[str, Any]]:
    for chunk in chunks:
        if not chunk.empty:
            yield from chunk.to_dict("records")


def write_rts22(chunks: Iterable[pd.DataFrame], header: Rts22Header, out: BinaryIO) -> int:
    """Stream the RTS 22 file of the rows of ``chunks``, in their order, to ``out``; the number of `<Tx>`.

    One row per execution: action ('NEW'/'CXL'), tx_id, executing_lei, submitting_lei, buyer_lei or
    buyer_mic, seller_lei or seller_mic, trade_ts, capacity, quantity, price, price_ccy, venue_mic,
    branch_country, venue_trade_id, isin (else full_name, cfi, notional_ccy, expiry, price_multiplier,
    underlying_index, option_type, strike, strike_ccy, exercise_style, delivery_type), algo; None/NaN/NaT
    is absent (a column missing from a chunk too). A CXL row uses only tx_id, executing_lei and
    submitting_lei. Optional booleans default to an investment firm (``investment_firm`` True) that
    transmitted no order (``transmission`` False), no securities financing (``sfti`` False). Prices and
    strikes are rounded to the 13 decimals of an ISO 20022 amount.

    The envelope, header and report are opened once and each row's `<Tx>` is built, written and dropped,
    so memory is one chunk, whatever the day's size. The bytes are those of the whole file as one pretty-
    printed tree (UTF-8, XML declaration): how the rows are cut into chunks changes nothing.

    No rows at all (no chunks, or only empty ones) is an error, raised before anything is written: the
    schema requires a `<Tx>`, and a day without executions files nothing. A bad row raises ValueError
    part-way, leaving a partial file in ``out`` for the caller to discard.
    """
    rows = _rows(chunks)
    first = next(rows, None)
    if first is None:
        raise ValueError("an RTS 22 file holds at least one transaction")
    written = 0
    with etree.xmlfile(out, encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element(f"{{{NS_BIZ}}}BizData", nsmap={None: NS_BIZ}):
            xf.write(_newline(1))
            with xf.element(f"{{{NS_BIZ}}}Hdr"):
                xf.write(_newline(2), _indented(_app_header(header), 2), _newline(1))
            xf.write(_newline(1))
            with xf.element(f"{{{NS_BIZ}}}Pyld"):
                xf.write(_newline(2))
                with xf.element(f"{{{NS_DOC}}}Document", nsmap={None: NS_DOC}):
                    xf.write(_newline(3))
                    with xf.element(f"{{{NS_DOC}}}FinInstrmRptgTxRpt"):
                        for row in chain((first,), rows):
                            xf.write(_newline(4), _indented(_transaction(row), 4))
                            written += 1
                        xf.write(_newline(3))
                    xf.write(_newline(2))
                xf.write(_newline(1))
            xf.write(_newline(0))
    out.write(b"\n")  # after the root element, where xmlfile writes nothing
    return written


def build_rts22(transactions: pd.DataFrame, header: Rts22Header) -> bytes:
    """The RTS 22 file of ``transactions`` in their row order, in memory: `write_rts22` of one chunk.

    For a file of a few transactions (tests, a correction); a day's file is streamed with `write_rts22`.
    """
    out = BytesIO()
    write_rts22([transactions], header, out)
    return out.getvalue()


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


_TX = f"{{{NS_DOC}}}Tx"
_REPORT = f"{{{NS_DOC}}}FinInstrmRptgTxRpt"
_APP_HDR = f"{{{NS_HDR}}}AppHdr"

_Rule = tuple[int, etree.XPath, Callable[[str], str | None]]
"""(rank, elements under the checked `<Tx>` or `<AppHdr>`, check): of two messages on one line, the lower
rank comes first (a file written on one line keeps the order it had when the rules ran over the whole tree)."""


def _rule(rank: int, path: str, problem: Callable[[str], str | None]) -> _Rule:
    return rank, etree.XPath(path, namespaces=NSMAP), problem


_HEADER_RULES = (
    _rule(0, "hdr:Fr/hdr:OrgId/hdr:Id/hdr:OrgId/hdr:Othr/hdr:Id", _lei_problem),
    _rule(5, "hdr:CreDt", _utc_problem),
)
_TX_RULES = (
    _rule(1, ".//doc:ExctgPty | .//doc:SubmitgPty | .//doc:AcctOwnr/doc:Id/doc:LEI", _lei_problem),
    _rule(2, ".//doc:AcctOwnr/doc:Id/doc:MIC | .//doc:New/doc:Tx/doc:TradVn", _mic_problem),
    _rule(3, ".//doc:FinInstrm/doc:Id | .//doc:FinInstrmGnlAttrbts/doc:Id | .//doc:ISIN", _isin_problem),
    _rule(4, ".//doc:ClssfctnTp", _cfi_problem),
    _rule(5, ".//doc:New/doc:Tx/doc:TradDt", _utc_problem),
)
_DUPLICATE_RANK = 6
_TX_IDS = etree.XPath("*/doc:TxId", namespaces=NSMAP)
"""The TxId of a report's `<Tx>`, in its `<New>` or `<Cxl>`."""


def _is_transaction(el: etree._Element) -> bool:
    """A report's `<Tx>`, not the trade details (also `<Tx>`) inside a `<New>`."""
    parent = el.getparent()
    return el.tag == _TX and parent is not None and parent.tag == _REPORT


def _iterparse(source: str | Path | BinaryIO, **kwargs: Any) -> etree.iterparse:
    """The file's elements as they end: local only (no network, no entities), of any size (huge_tree)."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    return etree.iterparse(
        source, events=("end",), resolve_entities=False, no_network=True, huge_tree=True, **kwargs
    )


class _BusinessRules:
    """The rules a schema cannot express, applied to each `<AppHdr>` and `<Tx>` as it ends; their errors
    are kept as (line, rank, message)."""

    def __init__(self) -> None:
        self.found: list[tuple[int, int, str]] = []

    def check(self, unit: etree._Element, rules: tuple[_Rule, ...]) -> None:
        for rank, xpath, problem in rules:
            for el in xpath(unit):
                message = problem((el.text or "").strip())
                if message:
                    self.found.append((el.sourceline or 0, rank, f"{_where(el)}: {message}"))

    def errors(self) -> list[str]:
        return [message for _, _, message in sorted(self.found, key=lambda item: item[:2])]


class _TxIds:
    """The uniqueness rule: a TxId twice as New (or as Cxl) in the file, reported once, at its second
    occurrence. The TxIds are the one thing kept for every transaction, so they go to a DuckDB table,
    `TXID_BUFFER` at a time, which DuckDB's memory limit caps (it spills beyond): a file's validation
    does not grow with its transactions. The table is a temporary one of `con` when given (the caller's
    memory budget), else of a connection of its own; it is made at the first flush."""

    def __init__(self, con: duckdb.DuckDBPyConnection | None, spill_root: Path | None) -> None:
        self._given = con
        self._spill_root = spill_root or Path(tempfile.gettempdir()) / "derivlake-spill"
        self._con: duckdb.DuckDBPyConnection | None = None
        self._table = f"rts22_tx_ids_{uuid.uuid4().hex[:12]}"
        self._rows: tuple[list[str], list[str], list[int]] = ([], [], [])  # action, TxId, line
        self._seen = 0

    def close(self) -> None:
        if self._con is self._given and self._con is not None:
            self._con.execute(f"DROP TABLE IF EXISTS temp.{self._table}")
        elif self._con is not None:
            self._con.close()
        self._con = None

    def add(self, tx: etree._Element) -> None:
        actions, ids, lines = self._rows
        for el in _TX_IDS(tx):
            actions.append(_local(el.getparent()))
            ids.append(el.text or "")
            lines.append(el.sourceline or 0)
        if len(ids) >= TXID_BUFFER:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        from derivlake.lake.spill import scratch_connection

        actions, ids, lines = self._rows
        if not ids:
            return
        if self._con is None:
            self._con = self._given or scratch_connection(self._spill_root)
            self._con.execute(
                f"CREATE TEMP TABLE {self._table} (n BIGINT, action VARCHAR, tx_id VARCHAR, line BIGINT)"
            )
        n = pa.array(range(self._seen, self._seen + len(ids)), pa.int64())
        batch = pa.table({"n": n, "action": actions, "tx_id": ids, "line": lines})
        self._con.register(f"{self._table}_batch", batch)
        try:
            self._con.execute(f"INSERT INTO temp.{self._table} SELECT * FROM {self._table}_batch")
        finally:
            self._con.unregister(f"{self._table}_batch")
        self._seen += len(ids)
        self._rows = ([], [], [])

    def repeated(self) -> list[tuple[int, int, str]]:
        """(line, rank, message) of each TxId's second occurrence as the same action."""
        self._flush()
        if self._con is None:
            return []
        sql = (SQL_DIR / "repeated_tx_ids.sql").read_text().format(tx_ids=f"temp.{self._table}")
        rows = self._con.execute(sql).fetchall()
        found = []
        for line, action, tx_id in rows:
            where = f"line {line}: TxId ({action} {tx_id})" if tx_id else f"line {line}: TxId ({action})"
            found.append((line, _DUPLICATE_RANK, f"{where}: TxId {tx_id} is reported twice as {action}"))
        return found


def _schema_errors(schema: etree.XMLSchema, root: etree._Element) -> list[tuple[int, str]]:
    if schema.validate(root):
        return []
    return [(e.line, f"line {e.line}: {e.message}") for e in schema.error_log]


def _holder() -> tuple[etree._Element, etree._Element]:
    """A schema-valid file but for its empty report, and that report: the transactions of a batch are
    moved into it to be validated, with their context in the schema and their line numbers."""
    header = Rts22Header("0" * 20, "XX", "VALIDATION", datetime(2000, 1, 1))
    root = etree.Element(f"{{{NS_BIZ}}}BizData", nsmap={None: NS_BIZ})
    _sub(root, "Hdr", ns=NS_BIZ).append(_app_header(header))
    pyld = _sub(root, "Pyld", ns=NS_BIZ)
    document = etree.SubElement(pyld, f"{{{NS_DOC}}}Document", nsmap={None: NS_DOC})
    return root, _sub(document, "FinInstrmRptgTxRpt", ns=NS_DOC)


def validate_rts22_file(
    source: str | Path | BinaryIO,
    *,
    batch: int = VALIDATION_BATCH,
    con: duckdb.DuckDBPyConnection | None = None,
    spill_root: Path | None = None,
) -> list[str]:
    """Every schema error ('line N: message') then every business-rule error; [] for a valid file.

    ``source`` (a path or a binary file object) is parsed incrementally. The business rules run on each
    `<AppHdr>` and `<Tx>` as it ends. Each `<Tx>` but the last is then moved out of the parsed tree into a
    holder, and the holder's ``batch`` transactions are schema-validated together and dropped; the tree
    left at the end (envelope, header, last `<Tx>`) is validated last. So at most ``batch`` + 2
    transactions are in memory, and the messages, their line numbers and order are those of validating
    the whole tree at once (the schema has no identity constraint across transactions); only in a file
    written on one line do the envelope's schema errors, if any, come after the transactions'. The TxIds,
    for the uniqueness rule, are the one thing kept for every transaction: in a temporary table of ``con``
    or, without one, of a DuckDB of its own spilling under ``spill_root`` (default: the system's
    temporary directory), within DuckDB's memory limit.

    A file that is not well-formed gives its first syntax error alone.

    Not ``iterparse(schema=...)``, which validates while parsing: in lxml 6.1.3 / libxml2 2.14 its schema
    errors all have line 0, and with ``resolve_entities=False`` it passes a truncated file as valid and
    reports a mismatched end tag as 'no element found' (the parser's errors no longer reach the parse's
    error log, from which lxml then judges the file well-formed).
    """
    if batch < 1:
        raise ValueError(f"batch is at least 1, got {batch}")
    schema = load_schema()
    holder, report = _holder()
    rules = _BusinessRules()
    with contextlib.closing(_TxIds(con, spill_root)) as tx_ids:
        tx_errors: list[tuple[int, str]] = []
        first_line: int | None = None
        last: etree._Element | None = None
        held = 0
        events = _iterparse(source, tag=(_APP_HDR, _TX))  # the other elements are parsed, not handed out
        try:
            for _, el in events:
                if el.tag == _APP_HDR:
                    rules.check(el, _HEADER_RULES)
                elif _is_transaction(el):
                    rules.check(el, _TX_RULES)
                    tx_ids.add(el)
                    if last is None:
                        first_line = el.sourceline or 0
                    else:
                        report.append(last)  # moves it out of the file's tree: it is complete
                        held += 1
                        if held == batch:
                            tx_errors += _schema_errors(schema, holder)
                            del report[:]
                            held = 0
                    last = el
        except etree.XMLSyntaxError as exc:
            if exc.lineno == 0 and events.root is None:  # lxml's own message for no bytes at all
                return ["line 1: Document is empty, line 1, column 1"]  # libxml2's, as parsing at once says
            return [f"line {exc.lineno}: {exc.msg}"]
        if held:
            tx_errors += _schema_errors(schema, holder)
            del report[:]
        # the file's own tree: the envelope before the first Tx, then the last Tx and anything after it
        rest = _schema_errors(schema, events.root)
        start = first_line if first_line is not None else math.inf
        before = [message for line, message in rest if line < start]
        after = [message for line, message in rest if line >= start]
        rules.found += tx_ids.repeated()
        return before + [message for _, message in tx_errors] + after + rules.errors()


def validate_rts22(xml: bytes) -> list[str]:
    """`validate_rts22_file` of a file in memory."""
    return validate_rts22_file(BytesIO(xml))


def iter_transaction_ids(source: str | Path | BinaryIO) -> Iterator[tuple[str, str]]:
    """(action 'NEW' or 'CXL', TxId) of every `<Tx>` in file order, the file parsed incrementally: each
    `<Tx>` is dropped once read. XMLSyntaxError for a file that is not well-formed."""
    action_of = {name: action for action, name in ACTIONS.items()}
    for _, el in _iterparse(source, tag=_TX):
        if not _is_transaction(el):
            continue
        for tx_id in _TX_IDS(el):
            yield action_of[_local(tx_id.getparent())], tx_id.text or ""
        el.clear()
        report = el.getparent()
        while el.getprevious() is not None:
            del report[0]


def parse_transaction_ids(xml: bytes) -> list[tuple[str, str]]:
    """`iter_transaction_ids` of a file in memory, as a list."""
    return list(iter_transaction_ids(BytesIO(xml)))
