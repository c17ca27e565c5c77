"""The regulatory files of test_margin_build's hand-made day: what is filed, byte-identical reruns,
corrections as cancellations plus new records, a lost file written again, an altered one refused."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from lxml import etree

from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
from derivlake.lake.status import read_status
from derivlake.regulatory.exports import ExportError, build_exports
from derivlake.regulatory.rts22 import parse_transaction_ids, validate_rts22
from derivlake.regulatory.settings import RegulatorySettings, demo_lei
from derivlake.reports.margin import build_margin
from tests.conftest import tmpfs
from tests.integration.test_chain_build import D
from tests.integration.test_margin_build import FILLS, SNAP, seed_margin_day

NS = {"a": "urn:iso:std:iso:20022:tech:xsd:auth.016.001.01"}
REG = RegulatorySettings(cftc_accounts={"acct-a": "1001", "acct-b": "1002"})
DAY_START = datetime(2024, 3, 7, 8)
LEI = demo_lei()


def _execute(settings: LakeSettings, *statements: str) -> None:
    con = open_lake(settings)
    try:
        for sql in statements:
            con.execute(sql)
    finally:
        con.close()


def seed_reportable_day(settings: LakeSettings) -> LakeSettings:
    """The margin day and its margin report, without acct-c's fill of an instrument that has no spec
    (tested on its own below)."""
    con = open_lake(settings)
    try:
        seed_margin_day(con)
        con.execute("DELETE FROM desk.fills WHERE account_id = 'acct-c'")
        build_margin(con, D)
    finally:
        con.close()
    return settings


@pytest.fixture
def day(lake_settings: LakeSettings) -> LakeSettings:
    return seed_reportable_day(lake_settings)


def _build(settings: LakeSettings):
    return build_exports(settings, D, settings=REG)


def _folder(settings: LakeSettings) -> Path:
    return settings.exports_dir / D.isoformat()


def _files(settings: LakeSettings) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(_folder(settings).iterdir())}


def test_first_filing(day: LakeSettings) -> None:
    result = _build(day)
    rts, cftc = result.files
    assert rts.path.name == f"RTS22_{LEI}_20240308_001.xml" and rts.filed_now
    assert cftc.path.name == "CFTC17_DLK_20240308_001.txt" and cftc.filed_now
    in_day = [f for f in FILLS if DAY_START <= f[2] < SNAP and f[0] != "acct-c"]
    xml = rts.path.read_bytes()
    assert validate_rts22(xml) == []
    expected_ids = [(f[0] + f"F{FILLS.index(f)}").upper().replace("-", "") for f in in_day]
    assert parse_transaction_ids(xml) == [("NEW", t) for t in expected_ids]
    assert rts.records == rts.new_records == len(in_day) == 9

    doc = etree.fromstring(xml)
    txs = doc.findall(".//a:Tx/a:New", NS)
    call = next(t for t in txs if t.findtext("a:TxId", namespaces=NS) == "ACCTAF1")  # buy 2 calls at 0.05 BTC
    assert call.findtext("a:Buyr/a:AcctOwnr/a:Id/a:LEI", namespaces=NS) == LEI
    assert call.findtext("a:Sellr/a:AcctOwnr/a:Id/a:MIC", namespaces=NS) == "XOFF"
    assert call.findtext("a:Tx/a:TradDt", namespaces=NS) == "2024-03-07T09:00:00.000000Z"
    assert call.findtext("a:Tx/a:Qty/a:Unit", namespaces=NS) == "2"
    # a coin price in USD: 0.05 BTC x the fill's underlying (forward) price 65,650
    assert call.findtext("a:Tx/a:Pric/a:Pric/a:MntryVal/a:Amt", namespaces=NS) == "3282.5"
    assert call.findtext(".//a:OptnTp", namespaces=NS) == "CALL"
    assert call.findtext(".//a:StrkPric/a:Pric/a:MntryVal/a:Amt", namespaces=NS) == "65000"
    assert call.findtext(".//a:FinInstrmGnlAttrbts/a:FullNm", namespaces=NS) == "BTC-15MAR24-65000-C"
    sold = next(t for t in txs if t.findtext("a:TxId", namespaces=NS) == "ACCTAF2")  # a sale: the venue buys
    assert sold.findtext("a:Buyr/a:AcctOwnr/a:Id/a:MIC", namespaces=NS) == "XOFF"
    assert sold.findtext("a:Sellr/a:AcctOwnr/a:Id/a:LEI", namespaces=NS) == LEI

    # quantities in contracts (field 30), the contract size as the multiplier: 20,000 USD of BTC-PERPETUAL
    # is 2,000 contracts of 10 USD, 100 SOL of SOL_USDC-PERPETUAL 1,000 of 0.1 SOL (until 2026-12-03 the
    # amounts were filed as they are, so 20,000 contracts of 10 USD: ten times the trade)
    by_id = {t.findtext("a:TxId", namespaces=NS): t for t in txs}
    for account, name, qty, multiplier in (
        ("acct-a", "BTC-PERPETUAL", "2000", "10"), ("acct-b", "SOL_USDC-PERPETUAL", "1000", "0.1")
    ):  # fmt: skip
        first = next(i for i, f in enumerate(FILLS) if f[:2] == (account, name))
        tx = by_id[f"{account}F{first}".upper().replace("-", "")]
        assert tx.findtext("a:Tx/a:Qty/a:Unit", namespaces=NS) == qty
        assert tx.findtext(".//a:DerivInstrmAttrbts/a:PricMltplr", namespaces=NS) == multiplier

    # CFTC: positions at 08:00 of the reportable accounts (level 25 contracts): acct-a holds 1,500
    # BTC-PERPETUAL contracts (15,000 USD / 10), so all its BTC lines; acct-b is short 100 SOL, 1,000
    # contracts of 0.1 SOL
    lines = cftc.path.read_text().splitlines()
    assert cftc.records == len(lines) == 4 and all(len(line) == 80 for line in lines)
    sol = next(line for line in lines if line[30:35] == "SOL  ")
    assert sol == (
        "RP" + "DLK" + "  " + "000000001002" + "20240308" + "DB" + " " + "SOL  " + "30000101"
        + " " * 7 + " " + "0000000" + "0001000" + " " * 5 + " " * 8 + " " + "1"
    )  # fmt: skip
    put = next(line for line in lines if line[29] == "P")
    assert put[7:19] == "000000001001" and put[35:43] == "20240329" and put[43:50] == "0060000"
    assert put[50] == "E" and put[51:58] == "0000000" and put[58:65] == "0000003"

    # the lake status lists the day's margin report and both files
    status = read_status(day)
    assert [
        (m.as_of_date, m.accounts, m.margin_calls, m.unpriced_positions, m.html) for m in status.margins
    ] == [
        (D, 3, 0, 0, False)  # acct-c: a transfer only; no HTML: built on a bare connection
    ]
    assert [(f.report, f.sequence, f.records, f.file_name) for f in status.filings] == [
        ("CFTC17", 1, 4, cftc.path.name), ("RTS22", 1, 9, rts.path.name)
    ]  # fmt: skip

    for f in result.files:
        manifest = json.loads((f.path.parent / f"{f.path.stem}.manifest.json").read_text())
        assert manifest["sha256"] == hashlib.sha256(f.path.read_bytes()).hexdigest()
        assert manifest["records"] == f.records and manifest["sequence"] == 1
        assert manifest["business_date"] == "2024-03-08" and manifest["entity"] == LEI


def test_rerun_files_nothing_and_writes_the_same_bytes(day: LakeSettings) -> None:
    _build(day)
    first = _files(day)
    again = _build(day)
    assert [f.filed_now for f in again.files] == [False, False]
    assert _files(day) == first
    con = open_lake(day, read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM reports.regulatory_files").fetchone()[0] == 2
    finally:
        con.close()

    # a file lost after it was filed (a full disk, a wiped folder) is written again, byte for byte
    lost = next(p for p in _folder(day).iterdir() if p.suffix == ".xml")
    lost.unlink()
    _build(day)
    assert _files(day) == first

    # a filed file altered on disk is refused, not overwritten
    lost.write_bytes(first[lost.name].replace(b"XOFF", b"XNAS", 1))
    with pytest.raises(ExportError, match="was altered"):
        _build(day)


def test_a_correction_files_cancellations_and_new_records(day: LakeSettings) -> None:
    first = _build(day)
    before = _files(day)
    _execute(
        day,
        "UPDATE desk.fills SET price = 0.041 WHERE trade_id = 'F2'",  # a corrected price
        "INSERT INTO desk.fills (account_id, trade_id, instrument_name, timestamp, direction, amount, price, fee, "
        "fee_currency, index_price, date) VALUES ('acct-b', 'F99', 'SOL_USDC-PERPETUAL', "
        "TIMESTAMP '2024-03-08 07:00:00', 'buy', 1, 151, 0, 'USDC', 150, DATE '2024-03-08')",  # a late fill
    )
    con = open_lake(day)
    try:
        build_margin(con, D)
    finally:
        con.close()
    second = _build(day)
    rts, cftc = second.files
    assert rts.sequence == 2 and rts.filed_now and cftc.sequence == 2 and cftc.filed_now
    assert parse_transaction_ids(rts.path.read_bytes()) == [
        ("CXL", "ACCTAF2"),
        ("NEW", "ACCTAF2"),
        ("NEW", "ACCTBF99"),
    ]
    assert (rts.records, rts.new_records, rts.cancelled_records) == (3, 2, 1)
    assert validate_rts22(rts.path.read_bytes()) == []
    assert "0000099" in cftc.path.read_text(), "acct-b is short 99 SOL now"
    after = _files(day)
    assert {n: b for n, b in after.items() if n in before} == before, "sequence 1 is never rewritten"
    assert first.files[0].path.name in after
    assert [f.filed_now for f in _build(day).files] == [False, False], "and the correction is filed once"


def test_what_cannot_be_reported_fails_naming_it(lake_settings: LakeSettings) -> None:
    con = open_lake(lake_settings)
    try:
        seed_margin_day(con)
        folder = lake_settings.exports_dir
        with pytest.raises(ExportError, match=r"margin report of 2024-03-08 is not in the lake"):
            build_exports(con, D, settings=REG, exports_dir=folder)
        build_margin(con, D)
        with pytest.raises(ExportError, match=r"1 fills of 1 instruments without a spec .*ETH-PERPETUAL"):
            build_exports(con, D, settings=REG, exports_dir=folder)
        assert not list(folder.rglob("*.*")), "no file written, not even a temporary one"
        assert con.execute("SELECT count(*) FROM reports.regulatory_files").fetchone()[0] == 0
    finally:
        con.close()


def test_report_exports_cli(lake_in_env: LakeSettings, capsys: pytest.CaptureFixture) -> None:
    from derivlake.cli import main

    seed_reportable_day(lake_in_env)
    assert main(["report", "exports", "--date", D.isoformat()]) == 0
    out = capsys.readouterr().out.splitlines()
    folder = lake_in_env.exports_dir / D.isoformat()
    assert out == [
        "RTS22 2024-03-08 sequence 1: 9 records (9 new, 0 cancelled), filed now",
        str(folder / f"RTS22_{LEI}_20240308_001.xml"),
        "CFTC17 2024-03-08 sequence 1: 4 records (4 new, 0 cancelled), filed now",
        str(folder / "CFTC17_DLK_20240308_001.txt"),
    ]
    assert main(["report", "exports", "--date", D.isoformat()]) == 0
    assert "sequence 1: 9 records (9 new, 0 cancelled), unchanged, already filed" in capsys.readouterr().out


def test_a_run_that_read_the_log_before_another_filed_refuses_to_file(day: LakeSettings) -> None:
    """Two runs at once would both take sequence 1: the one committing second finds the log changed
    since it read it, files nothing and says so (its rerun sees the other's filing)."""
    from derivlake.regulatory.exports import FiledFile, _log_filing, ensure_tables
    from derivlake.reports.chain import BusinessDay

    con = open_lake(day)
    try:
        ensure_tables(con)
        stale_log = con.execute("SELECT * FROM reports.regulatory_files").df()  # read: nothing filed yet
        build_exports(con, D, settings=REG, exports_dir=day.exports_dir)  # the other run files sequence 1
        tmp = day.exports_dir / "mine.txt.tmp"
        tmp.write_bytes(b"")
        mine = FiledFile("CFTC17", 1, tmp.with_suffix(""), "0" * 64, 0, 0, 0, SNAP, True)
        with pytest.raises(
            ExportError, match=r"another run filed regulatory files of 2024-03-08 meanwhile \(2 more\)"
        ):
            _log_filing(con, None, BusinessDay(D), [(mine, tmp)], None, stale_log)
        assert not tmp.exists(), "what it rendered is removed"
        assert con.execute("SELECT count(*) FROM reports.regulatory_files").fetchone()[0] == 2
    finally:
        con.close()


def test_a_day_of_many_chunks(day: LakeSettings) -> None:
    """5,000 more executions read and written 2,048 at a time: the same file as in one piece."""
    _execute(
        day,
        "INSERT INTO desk.fills (account_id, trade_id, instrument_name, timestamp, direction, amount, price, fee, "
        "fee_currency, index_price, underlying_price, date) SELECT 'acct-b', 'G' || i, 'SOL_USDC-PERPETUAL', "
        "TIMESTAMP '2024-03-07 20:00:00' + i * INTERVAL 1 SECOND, CASE WHEN i % 2 = 0 THEN 'buy' ELSE 'sell' END, "
        "1, 150 + i / 1000, 0, 'USDC', 150, 150, DATE '2024-03-07' FROM range(5000) t(i)",
    )
    small = build_exports(day, D, settings=dataclasses.replace(REG, chunk_rows=2048))
    xml = small.files[0].path.read_bytes()
    assert small.files[0].records == 5009 and validate_rts22(xml) == []
    ids = [t for _, t in parse_transaction_ids(xml)]
    assert len(set(ids)) == 5009 and ids[-1] == "ACCTBG4999", "in the day's order"
    small.files[0].path.unlink()  # as if lost: written again from one chunk, byte for byte
    assert build_exports(day, D, settings=REG).files[0].path.read_bytes() == xml


def test_a_vanished_fill_is_cancelled_and_filed_again_when_it_returns(day: LakeSettings) -> None:
    _build(day)
    con = open_lake(day)
    try:
        con.execute("CREATE TEMP TABLE gone AS SELECT * FROM desk.fills WHERE trade_id = 'F2'")
        con.execute("DELETE FROM desk.fills WHERE trade_id = 'F2'")
        rts, cftc = _build(day).files
        assert (rts.sequence, rts.records, rts.new_records, rts.cancelled_records) == (2, 1, 0, 1)
        assert parse_transaction_ids(rts.path.read_bytes()) == [("CXL", "ACCTAF2")]
        assert not cftc.filed_now, "the positions come from the margin report, which did not change"
        con.execute("INSERT INTO desk.fills SELECT * FROM gone")
        rts = _build(day).files[0]
        assert (rts.sequence, rts.records, rts.new_records, rts.cancelled_records) == (3, 1, 1, 0)
        assert parse_transaction_ids(rts.path.read_bytes()) == [("NEW", "ACCTAF2")]
        logged = con.execute(
            "SELECT sequence, action, tx_id, content_hash IS NULL FROM reports.rts22_filed "
            "WHERE tx_id = 'ACCTAF2' ORDER BY sequence"
        ).fetchall()
        assert logged == [
            (1, "NEW", "ACCTAF2", False),
            (2, "CXL", "ACCTAF2", True),
            (3, "NEW", "ACCTAF2", False),
        ]
    finally:
        con.close()
    assert not _build(day).files[0].filed_now


def test_fills_that_change_between_the_two_passes_file_nothing(
    day: LakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fill deleted after the first pass planned it (a race this test forces by deleting it just
    before the second pass): the run fails naming the change and files nothing; its rerun files the day."""
    from derivlake.regulatory.filing_state import FilingState

    render = FilingState.render

    def raced(self: FilingState, *args, **kwargs) -> int:
        self.con.execute("DELETE FROM desk.fills WHERE trade_id = 'F2'")
        return render(self, *args, **kwargs)

    monkeypatch.setattr(FilingState, "render", raced)
    with pytest.raises(
        ExportError, match=r"fills of 2024-03-08 changed while it was built \(9 transactions planned, 8"
    ):
        _build(day)
    monkeypatch.undo()
    assert not _folder(day).exists() or not list(_folder(day).iterdir()), "no file, not even a temporary one"
    assert _logged_files(day) == 0
    rts = _build(day).files[0]
    assert (rts.sequence, rts.records) == (1, 8)


def test_a_full_disk_files_nothing_and_the_rerun_files_the_day(day: LakeSettings, tmp_path: Path) -> None:
    disk = tmp_path / "exports"
    disk.mkdir()
    with tmpfs(disk, "8k", "a full exports disk") as resize:  # the day's XML alone is ~25 kB
        name = re.escape(f"{disk}/{D}/RTS22_{LEI}_20240308_001.xml")
        with pytest.raises(
            ExportError, match=rf"cannot write {name}: No space left on device; nothing was filed"
        ):
            build_exports(day, D, settings=REG, exports_dir=disk)
        assert not [p for p in disk.rglob("*") if p.is_file()], "no partial file left"
        assert _logged_files(day) == 0
        resize("16m")  # space is back
        result = build_exports(day, D, settings=REG, exports_dir=disk)
        assert [(f.sequence, f.filed_now) for f in result.files] == [(1, True), (1, True)]
        assert validate_rts22(result.files[0].path.read_bytes()) == []


def test_a_disk_full_after_filing_gets_the_files_written_by_the_rerun(
    day: LakeSettings, tmp_path: Path
) -> None:
    """The log is committed, then the disk fills before the manifests are written: the run fails saying
    the files are filed, and the next one writes them, byte for byte."""
    filed = {p.name: p.read_bytes() for p in _build(day).files[0].path.parent.iterdir()}
    files = [n for n in filed if not n.endswith(".manifest.json")]
    pages = sum(-(-len(filed[n]) // 4096) for n in files)  # room for the rendered files, not their manifests
    disk = tmp_path / "exports"
    disk.mkdir()
    with tmpfs(disk, str(pages * 4096), "a full exports disk") as resize:
        with pytest.raises(
            ExportError, match=r"manifest\.json: No space left on device; it is logged as filed"
        ):
            build_exports(day, D, settings=REG, exports_dir=disk)
        resize("16m")
        assert [f.filed_now for f in build_exports(day, D, settings=REG, exports_dir=disk).files] == [
            False,
            False,
        ]
        assert {p.name: p.read_bytes() for p in (disk / D.isoformat()).iterdir()} == filed
    assert _logged_files(day) == 2, "filed once"


def _logged_files(settings: LakeSettings) -> int:
    con = open_lake(settings, read_only=True)
    try:
        return con.execute("SELECT count(*) FROM reports.regulatory_files").fetchone()[0]
    finally:
        con.close()


def test_the_filed_hashes_are_those_of_the_python_oracle(day: LakeSettings) -> None:
    """The hashes DuckDB computed and logged, against the Python implementation that logged them before
    (tests/unit/test_content_hash.py), on the transactions of the day as the export reads them."""
    from derivlake.regulatory.exports import _sql
    from derivlake.regulatory.identifiers import cfi_for
    from derivlake.regulatory.records import rts22_transactions
    from derivlake.reports.chain import BusinessDay
    from tests.unit.test_content_hash import oracle_hashes

    _build(day)
    con = open_lake(day, read_only=True)
    try:
        fills = con.execute(_sql("rts22_fills.sql", BusinessDay(D))).df()
        logged = dict(con.execute("SELECT tx_id, content_hash FROM reports.rts22_filed").fetchall())
    finally:
        con.close()
    tx = rts22_transactions(fills, REG)
    assert len(logged) == len(tx) == 9
    assert logged == dict(zip(tx["tx_id"], oracle_hashes(tx), strict=True))
    # each fill's CFI is that of its own instrument (the day holds calls, puts and futures)
    expected = [cfi_for(k, o) for k, o in zip(fills["kind"], fills["option_type"], strict=True)]
    assert list(tx["cfi"]) == expected and set(expected) == {"OCEMCS", "OPEMCS", "FFMCSX"}


def test_a_day_that_does_not_sort_on_two_threads_sorts_on_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """600,000 fills in a 64 MB DuckDB: their sort ran out of memory on two threads and fits on one."""
    from derivlake.regulatory.exports import _sql
    from derivlake.regulatory.records import fill_chunks
    from derivlake.reports.chain import BusinessDay

    monkeypatch.setenv("DERIVLAKE_DUCKDB_MEMORY_LIMIT", "64MB")
    lake = seed_reportable_day(LakeSettings(home=tmp_path / "home"))
    con = open_lake(lake)
    try:
        con.execute(
            "INSERT INTO desk.fills (account_id, trade_id, instrument_name, timestamp, direction, amount, price, "
            "fee, fee_currency, index_price, underlying_price, date) SELECT 'acct-b', 'G' || i, 'SOL_USDC-PERPETUAL', "
            "TIMESTAMP '2024-03-07 09:00:00' + i * INTERVAL 100 MILLISECOND, 'buy', 1, 150, 0, 'USDC', 150, 150, "
            "DATE '2024-03-07' FROM range(600000) t(i)"
        )
        con.execute("SET threads = 2")
        sql = _sql("rts22_fills.sql", BusinessDay(D))
        with caplog.at_level("WARNING", logger="derivlake.regulatory.records"):
            stamps = [c["timestamp"].iloc[[0, -1]] for c in fill_chunks(con, sql, 20480)]
        assert sum(1 for _ in stamps) == -(-600009 // 20480)
        assert all(a.iloc[-1] <= b.iloc[0] for a, b in itertools.pairwise(stamps)), "in the day's order"
        assert "do not sort in DuckDB's memory on 2 threads: sorting on one" in caplog.text
        assert con.execute("SELECT current_setting('threads')").fetchone() == (2,), "restored"
    finally:
        con.close()

    # A sort that does not fit on one thread either: at limits that small, DuckLake's own metadata reads
    # run out of memory first, at random (their error reads "Current transaction is aborted"), so the
    # sort's failure is injected here, on both attempts
    con = open_lake(lake)

    class NoRoomForTheSort:
        def __getattr__(self, name: str) -> object:
            return getattr(con, name)

        def execute(self, query: str, *args: object) -> object:
            if query == sql:
                raise duckdb.OutOfMemoryException("Out of Memory Error: failed to pin block (injected)")
            return con.execute(query, *args)

    try:
        con.execute("SET threads = 2")
        with pytest.raises(
            ExportError, match=r"do not sort within DuckDB's memory limit of .* even on one thread"
        ):
            next(fill_chunks(NoRoomForTheSort(), sql, 20480))
        assert con.execute("SELECT current_setting('threads')").fetchone() == (2,), "restored"
    finally:
        con.close()


def test_a_first_pass_cut_short_files_nothing(day: LakeSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A statement run on the lake connection while the fills stream on it ends the stream without an
    error (DuckDB): forced here after the first of three chunks, the run refuses to plan from what it read."""
    import derivlake.regulatory.filing_state as filing_state

    _execute(
        day,
        "INSERT INTO desk.fills SELECT f.* REPLACE ('G' || r.range || f.trade_id AS trade_id) FROM desk.fills f, range(500) r",
    )
    con = open_lake(day)
    transactions = filing_state.rts22_transactions

    def interrupting(chunk, settings):
        con.execute("SET threads = 2")  # a statement without rows: the next fetch finds none
        return transactions(chunk, settings)

    monkeypatch.setattr(filing_state, "rts22_transactions", interrupting)
    try:
        with pytest.raises(ExportError, match=r"read 2048 of the day's 4509 fills: nothing was filed"):
            build_exports(
                con, D, settings=dataclasses.replace(REG, chunk_rows=2048), exports_dir=day.exports_dir
            )
        assert con.execute("SELECT count(*) FROM reports.regulatory_files").fetchone() == (0,)
    finally:
        con.close()


def test_account_ids_longer_than_a_tx_id_file_one_tx_id_per_fill(day: LakeSettings) -> None:
    """A TxId holds 52 characters of A-Z, 0-9: an account id that fills them (with its '-' dropped) kept
    no room for the trade id, every fill of the account was one TxId, and the day's file was refused."""
    account = "desk-account-for-the-client-with-a-long-name-0001-and-still-more"
    _execute(day, f"UPDATE desk.fills SET account_id = '{account}' WHERE account_id = 'acct-b'")
    rts, _ = _build(day).files
    ids = [t for _, t in parse_transaction_ids(rts.path.read_bytes())]
    assert len(ids) == len(set(ids)) == 9 and all(re.fullmatch(r"[A-Z0-9]{1,52}", t) for t in ids)
    assert ids[:7] == [f"ACCTAF{n}" for n in range(1, 8)]  # the ids that fit are as they were
    long_ids = ids[7:]
    for tx_id, trade_id in zip(long_ids, ("F9", "F10"), strict=True):
        digest = hashlib.sha256(f"{account}\x1f{trade_id}".encode()).hexdigest()[:32].upper()
        assert tx_id == "DESKACCOUNTFORTHECLI" + digest
    assert not _build(day).files[0].filed_now  # the same TxIds again: nothing new to file


def test_an_inverse_and_a_linear_contract_of_one_coin_are_different_series(
    lake_settings: LakeSettings,
) -> None:
    """BTC-PERPETUAL counts contracts of 10 USD, BTC_USDC-PERPETUAL contracts of 0.001 BTC: 1,500 of one
    long and 1,500 of the other short are two positions, not a flat account (they netted to nothing, and
    acct-a's whole BTC complex was left out of the CFTC file)."""
    from datetime import date

    from tests.integration.test_margin_build import PERP_EXPIRY

    con = open_lake(lake_settings)
    try:
        seed_margin_day(con)
        con.execute("DELETE FROM desk.fills WHERE account_id = 'acct-c'")
        con.execute(
            "INSERT INTO market.instruments (exchange, instrument_name, kind, base_currency, quote_currency, "
            "settlement_currency, instrument_type, option_type, strike, expiration_ts, settlement_period, "
            "contract_size, valid_from, date) VALUES ('deribit', 'BTC_USDC-PERPETUAL', 'future', 'BTC', "
            "'USDC', 'USDC', 'linear', NULL, NULL, ?, 'perpetual', 0.001, ?, ?)",
            [PERP_EXPIRY, datetime(2024, 1, 1), date(2024, 1, 1)],
        )
        con.execute(
            "INSERT INTO desk.fills (account_id, trade_id, instrument_name, timestamp, direction, amount, "
            "price, fee, fee_currency, index_price, underlying_price, date) VALUES ('acct-a', 'L1', "
            "'BTC_USDC-PERPETUAL', TIMESTAMP '2024-03-07 19:00', 'sell', 1.5, 64000, 0, 'USDC', 65000, "
            "65000, DATE '2024-03-07')"
        )
        con.execute(
            "INSERT INTO market.derivative_ticker (exchange, symbol, timestamp, mark_price, index_price, date) "
            "VALUES ('deribit', 'BTC_USDC-PERPETUAL', TIMESTAMP '2024-03-08 07:59', 65000, 64950, "
            "DATE '2024-03-08')"
        )
        build_margin(con, D)
    finally:
        con.close()
    # both contracts would file under the coin's code BTC: refused, naming them, before anything is filed
    with pytest.raises(ExportError, match=r"contracts BTC, BTC_USDC would all be filed as commodity BTC"):
        _build(lake_settings)
    assert not _folder(lake_settings).exists() or not any(_folder(lake_settings).iterdir())
    codes = {"BTC": "BTC", "BTC_USDC": "BTCU", "SOL": "SOL"}
    reg = dataclasses.replace(REG, commodity_codes=codes)
    cftc = build_exports(lake_settings, D, settings=reg).files[1]
    futures = {line[30:35]: line for line in cftc.path.read_text().splitlines() if line[29] == " "}
    assert futures["BTC  "][51:65] == "0001500" + "0000000"  # 15,000 USD / 10, long
    assert futures["BTCU "][51:65] == "0000000" + "0001500"  # 1.5 BTC / 0.001, short
    assert futures["SOL  "][51:65] == "0000000" + "0001000"  # SOL_USDC files as SOL, as before


def test_a_cancellation_filed_without_its_submitting_entity_stands(day: LakeSettings) -> None:
    """Before 2026-12-03 a <Cxl> had no <SubmitgPty>: a rerun renders that sequence differently now, and
    keeps the filed file as it stands on disk (intact) instead of failing the day; lost, it cannot be
    written again, and the run says so."""
    _build(day)
    _execute(day, "UPDATE desk.fills SET price = 0.051 WHERE trade_id = 'F1'")
    rts = _build(day).files[0]
    assert rts.sequence == 2 and b"<SubmitgPty>" in rts.path.read_bytes().split(b"</Cxl>")[0]
    old = re.sub(
        rb"(</ExctgPty>)\n +<SubmitgPty>[^<]*</SubmitgPty>(\n +</Cxl>)", rb"\1\2", rts.path.read_bytes()
    )
    rts.path.write_bytes(old)
    digest = hashlib.sha256(old).hexdigest()
    _execute(
        day,
        f"UPDATE reports.regulatory_files SET sha256 = '{digest}' WHERE report = 'RTS22' AND sequence = 2",
    )
    again = _build(day).files[0]
    assert (again.sequence, again.filed_now, again.sha256) == (2, False, digest)
    assert again.path.read_bytes() == old
    again.path.unlink()
    with pytest.raises(ExportError, match="another format"):
        _build(day)
