"""The regulatory files of business day D: MiFIR RTS 22 transaction reports of the desk's executions in
[D-1 08:00, D 08:00) and CFTC Part 17 records of its positions at D 08:00 (the day's margin report).

Filing is append-only. The first build of a day files sequence 1. A rerun compares what it would file
with what was filed (`reports.rts22_filed` per transaction, `reports.regulatory_files` per file): the
same content files nothing new and rewrites the same bytes; different fills file the next sequence with
cancellations of the changed or vanished transactions plus new records of the changed or added ones (a
position file, a snapshot, is filed again whole). The log is committed before the files are written, so
a file lost to a full disk is written again, byte for byte, by the next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from derivlake.config import LakeSettings
from derivlake.regulatory.settings import RegulatorySettings
from derivlake.reports.chain import BusinessDay

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).with_name("sql")
RTS22, CFTC17 = "RTS22", "CFTC17"
NEW, CXL = "NEW", "CXL"
HASHED = (
    "executing_lei", "buyer_lei", "buyer_mic", "seller_lei", "seller_mic", "trade_ts", "capacity", "quantity",
    "price", "price_ccy", "venue_mic", "branch_country", "venue_trade_id", "full_name", "cfi", "expiry",
    "price_multiplier", "underlying_index", "option_type", "strike", "exercise_style",
)  # fmt: skip
"""The reported content of a transaction: a change in any of these is a correction."""


class ExportError(RuntimeError):
    """The day's files cannot be filed: the message says why and what to do."""


@dataclass(frozen=True)
class FiledFile:
    report: str
    sequence: int
    path: Path
    sha256: str
    records: int
    new_records: int
    cancelled_records: int
    generated_at: datetime
    filed_now: bool

    def manifest(self, settings: RegulatorySettings, as_of: date) -> dict[str, Any]:
        return {
            "report": self.report,
            "file": self.path.name,
            "entity": settings.entity_lei,
            "business_date": as_of.isoformat(),
            "sequence": self.sequence,
            "sha256": self.sha256,
            "records": self.records,
            "new_records": self.new_records,
            "cancelled_records": self.cancelled_records,
            "generated_at": self.generated_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }


@dataclass(frozen=True)
class ExportResult:
    as_of: date
    files: tuple[FiledFile, ...]

    def summary(self) -> dict[str, Any]:
        """The asset event's `extra` and the CLI's output: JSON-serialisable."""
        return {
            "as_of_date": self.as_of.isoformat(),
            "files": [
                {
                    "file": str(f.path),
                    "sequence": f.sequence,
                    "records": f.records,
                    "new": f.new_records,
                    "cancelled": f.cancelled_records,
                    "filed_now": f.filed_now,
                }
                for f in self.files
            ],
            "filed_now": sum(f.filed_now for f in self.files),
        }


def _sql(name: str, day: BusinessDay) -> str:
    from derivlake.reports.output import report_sql

    return report_sql(SQL_DIR / name, day)


def file_stem(report: str, settings: RegulatorySettings, as_of: date, sequence: int) -> str:
    """Deterministic names: report type, entity, business date, sequence."""
    entity = settings.entity_lei if report == RTS22 else settings.cftc_firm
    return f"{report}_{entity}_{as_of:%Y%m%d}_{sequence:03d}"


# ---------------------------------------------------------------------------------------------------------
# RTS 22: transactions from fills


def rts22_transactions(fills: pd.DataFrame, settings: RegulatorySettings) -> pd.DataFrame:
    """One RTS 22 transaction per fill, column-wise. The desk account's side is its client's LEI (its own
    when unlisted), the other side the venue (an anonymous order book: its MIC). Prices are in USD: an
    inverse option's coin price at the fill's index, USDC taken as USD."""
    import numpy as np
    import pandas as pd

    from derivlake.regulatory.identifiers import cfi_for

    unknown = fills[fills["kind"].isna()]
    if not unknown.empty:
        names = sorted(unknown["instrument_name"].unique())
        raise ExportError(
            f"{len(unknown)} fills of {len(names)} instruments without a spec in market.instruments "
            f"({', '.join(names[:5])}): an RTS 22 report needs each instrument's classification; drain "
            "the instruments topic, then rerun"
        )
    priced = fills["price"].notna() & (
        fills["index_price"].notna() | ~(fills["kind"] == "option") | ~fills["is_inverse"]
    )
    if not priced.all():
        bad = fills.loc[~priced, "trade_id"].tolist()
        raise ExportError(
            f"{len(bad)} fills without a price or, for a coin-priced option, the index price that makes it USD "
            f"(trade ids {', '.join(map(str, bad[:5]))}): they cannot be reported"
        )
    buy = (fills["direction"] == "buy").to_numpy()
    client = fills["account_id"].map(settings.lei_of)
    option = (fills["kind"] == "option").to_numpy()
    price = fills["price"].to_numpy(dtype=float)
    usd_price = np.where(
        option & fills["is_inverse"].to_numpy(dtype=bool), price * fills["index_price"], price
    )
    tx_id = (fills["account_id"] + fills["trade_id"]).str.upper().str.replace(r"[^A-Z0-9]", "", regex=True)
    cfi = {
        (k, o): cfi_for(k, o)
        for k, o in fills[["kind", "option_type"]].drop_duplicates().itertuples(index=False)
    }
    otype = fills["option_type"].map({"call": "CALL", "put": "PUTO"})
    return pd.DataFrame(
        {
            "action": NEW,
            "tx_id": tx_id.str.slice(0, 52),
            "executing_lei": settings.entity_lei,
            "submitting_lei": settings.entity_lei,
            "buyer_lei": np.where(buy, client, None),
            "buyer_mic": np.where(buy, None, settings.venue_mic),
            "seller_lei": np.where(buy, None, client),
            "seller_mic": np.where(buy, settings.venue_mic, None),
            "trade_ts": fills["timestamp"],
            "capacity": "DEAL",
            "quantity": fills["amount"].astype(float),
            "price": usd_price,
            "price_ccy": "USD",
            "venue_mic": settings.venue_mic,
            "branch_country": settings.branch_country,
            "venue_trade_id": fills["trade_id"].str.replace(r"[^A-Za-z0-9]", "", regex=True),  # ESMA's type
            "isin": None,
            "full_name": fills["instrument_name"],
            "cfi": [cfi[(k, o)] for k, o in zip(fills["kind"], fills["option_type"], strict=True)],
            "notional_ccy": "USD",
            "expiry": fills["expiry"],
            "price_multiplier": fills["contract_size"].fillna(1.0).astype(float),
            "underlying_index": fills["underlying_index"],
            "option_type": otype.where(option, None),
            "strike": fills["strike"].where(option, None),
            "strike_ccy": np.where(option, "USD", None),
            "exercise_style": np.where(option, "EURO", None),
            "delivery_type": "CASH",
            "algo": settings.algo,
        }
    )


def content_hashes(tx: pd.DataFrame) -> pd.Series:
    """A stable hash of each transaction's reported content (text of every HASHED column)."""
    text = tx[list(HASHED)].apply(lambda col: col.map(str)).agg("\x1f".join, axis=1)
    return text.map(lambda t: hashlib.sha256(t.encode()).hexdigest()[:32])


def rts22_changes(current: pd.DataFrame, filed: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(tx_ids to cancel, tx_ids to file as new) given the current transactions (with `content_hash`) and
    the day's filing log: what was filed last for a transaction stands until cancelled."""
    in_order = filed.assign(is_new=filed["action"] == NEW).sort_values(["sequence", "is_new"], kind="stable")
    last = in_order.drop_duplicates("tx_id", keep="last")  # a sequence cancels first, then re-files
    alive = last[last["action"] == NEW]
    standing = dict(zip(alive["tx_id"], alive["content_hash"], strict=True))
    now = dict(zip(current["tx_id"], current["content_hash"], strict=True))
    cancel = sorted(t for t, h in standing.items() if now.get(t) != h)
    new = [t for t, h in now.items() if standing.get(t) != h]
    return cancel, new


def render_rts22(
    actions: pd.DataFrame, current: pd.DataFrame, settings: RegulatorySettings, stem: str, created: datetime
) -> bytes:
    """The file of one sequence: its cancellations (by id) then its new records (current content)."""
    import pandas as pd

    from derivlake.regulatory.rts22 import Rts22Header, build_rts22, validate_rts22

    cxl = actions.loc[actions["action"] == CXL, ["tx_id"]].assign(
        action=CXL, executing_lei=settings.entity_lei
    )
    new_ids = actions.loc[actions["action"] == NEW, "tx_id"]
    new = current[current["tx_id"].isin(new_ids)]
    rows = pd.concat([cxl, new], ignore_index=True)
    message_id = stem.replace(f"_{settings.entity_lei}", "")  # BizMsgIdr: 35 characters at most
    xml = build_rts22(rows, Rts22Header(settings.entity_lei, settings.receiver, message_id, created))
    errors = validate_rts22(xml)
    if errors:
        shown = "; ".join(errors[:10])
        raise ExportError(f"{stem}.xml fails validation ({len(errors)} errors): {shown}")
    return xml


# ---------------------------------------------------------------------------------------------------------
# CFTC Part 17: positions


def cftc_records(positions: pd.DataFrame, as_of: date, settings: RegulatorySettings) -> list[str]:
    """The 80-character records of the reportable accounts' positions at D 08:00."""
    from derivlake.regulatory.cftc17 import PositionRecord, aggregate_positions, format_record, strike_units

    rows = aggregate_positions(positions, settings.reportable_level)
    lines = []
    for r in rows.itertuples(index=False):  # one per reportable position line, not per message
        option = r.put_call in ("C", "P")
        lines.append(
            format_record(
                PositionRecord(
                    reporting_firm=settings.cftc_firm,
                    account=settings.cftc_account(r.account_id),
                    report_date=as_of,
                    exchange=settings.cftc_exchange,
                    put_call=r.put_call if option else None,
                    commodity=settings.commodity_codes.get(r.commodity, r.commodity),
                    expiration=_as_date(r.expiration),
                    strike=strike_units(r.strike, settings.strike_decimals.get(r.commodity, 0))
                    if option
                    else None,
                    exercise_style=r.exercise_style if option else None,
                    long=int(r.long),
                    short=int(r.short),
                )
            )
        )
    return lines


def _as_date(value: object) -> date:
    """A DATE column's value as a date (DuckDB hands DATE columns to pandas as timestamps)."""
    import pandas as pd

    return pd.Timestamp(value).date()


# ---------------------------------------------------------------------------------------------------------
# Build, file, write


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute((SQL_DIR / "regulatory_tables.sql").read_text())


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def build_exports(
    con_or_settings: duckdb.DuckDBPyConnection | LakeSettings,
    as_of: date,
    *,
    exports_dir: Path | None = None,
    settings: RegulatorySettings | None = None,
) -> ExportResult:
    """File (or confirm) the regulatory files of business day `as_of` and write them with manifests."""
    from derivlake.reports.margin import ensure_tables as ensure_margin_tables
    from derivlake.reports.output import report_connection

    reg = settings or RegulatorySettings.from_env()
    day = BusinessDay(as_of)
    if isinstance(con_or_settings, LakeSettings) and exports_dir is None:
        exports_dir = con_or_settings.exports_dir
    with report_connection(con_or_settings, None, f"exports {as_of}") as (con, lake, _):
        ensure_margin_tables(con)
        ensure_tables(con)
        (margin_rows,) = con.execute(_sql("margin_rows.sql", day)).fetchone()
        if margin_rows == 0:
            raise ExportError(
                f"the margin report of {as_of} is not in the lake, and it holds the positions of the CFTC "
                f"file: build it first (the eod_margin DAG, or `python -m derivlake report margin --date {as_of}`)"
            )
        current = rts22_transactions(con.execute(_sql("rts22_fills.sql", day)).df(), reg)
        current["content_hash"] = content_hashes(current)
        records = cftc_records(con.execute(_sql("cftc_positions.sql", day)).df(), as_of, reg)
        log_files = con.execute(_sql("filed.sql", day)).df()
        filed = con.execute(_sql("rts22_filed.sql", day)).df()
        now = _now()
        rts, actions = _rts22_filing(current, filed, log_files, reg, as_of, now)
        out = [*rts, _cftc_filing(records, log_files, reg, as_of, now)]
        _log_filing(con, lake, day, out, actions, log_files)
    written = tuple(_write(f, data, reg, as_of, exports_dir) if exports_dir else f for f, data in out)
    for f in written:
        log.info(
            "%s %s: sequence %d, %d records (%d new, %d cancelled), %s",
            f.report, as_of, f.sequence, f.records, f.new_records, f.cancelled_records,
            "filed now" if f.filed_now else "unchanged",
        )  # fmt: skip
    return ExportResult(as_of, written)


def _rts22_filing(
    current: pd.DataFrame,
    filed: pd.DataFrame,
    log_files: pd.DataFrame,
    reg: RegulatorySettings,
    as_of: date,
    now: datetime,
) -> tuple[list[tuple[FiledFile, bytes]], pd.DataFrame | None]:
    """The RTS 22 file to write (none for a day without executions) and the actions to log (None when the
    standing file stands: it is rendered again from the log, byte for byte)."""
    import pandas as pd

    cancel, new = rts22_changes(current, filed)
    rts = log_files[log_files["report"] == RTS22]
    if rts.empty and current.empty:
        log.info("RTS22 %s: no executions in the business day, nothing to report", as_of)
        return [], None
    if rts.empty or cancel or new:
        seq = int(rts["sequence"].max()) + 1 if not rts.empty else 1
        actions = pd.DataFrame({"action": [CXL] * len(cancel) + [NEW] * len(new), "tx_id": cancel + new})
        actions = actions.merge(current[["tx_id", "content_hash"]], on="tx_id", how="left")
        actions.loc[actions["action"] == CXL, "content_hash"] = None
        return [_rts_file(actions, current, reg, as_of, seq, now, filed_now=True)], actions.assign(
            as_of_date=as_of, sequence=seq
        )
    last = rts.iloc[-1]
    standing = filed[filed["sequence"] == last["sequence"]]
    created = last["generated_at"].to_pydatetime()
    return [_rts_file(standing, current, reg, as_of, int(last["sequence"]), created, filed_now=False)], None


def _cftc_filing(
    records: list[str], log_files: pd.DataFrame, reg: RegulatorySettings, as_of: date, now: datetime
) -> tuple[FiledFile, bytes]:
    """The position file: a snapshot, filed again whole when it differs from the last one filed."""
    text = "".join(line + "\n" for line in records).encode("ascii")
    digest = hashlib.sha256(text).hexdigest()
    cftc = log_files[log_files["report"] == CFTC17]
    if cftc.empty or cftc.iloc[-1]["sha256"] != digest:
        seq = int(cftc["sequence"].max()) + 1 if not cftc.empty else 1
        name = f"{file_stem(CFTC17, reg, as_of, seq)}.txt"
        return FiledFile(CFTC17, seq, Path(name), digest, len(records), len(records), 0, now, True), text
    last = cftc.iloc[-1]
    created = last["generated_at"].to_pydatetime()
    f = FiledFile(CFTC17, int(last["sequence"]), Path(last["file_name"]), digest, len(records),
                  int(last["new_records"]), 0, created, False)  # fmt: skip
    return f, text


def _log_filing(
    con: duckdb.DuckDBPyConnection,
    lake: LakeSettings | None,
    day: BusinessDay,
    out: list[tuple[FiledFile, bytes]],
    actions: pd.DataFrame | None,
    log_files: pd.DataFrame,
) -> None:
    """Log the files filed now in one transaction, provided no other run filed any of the day's since this
    one read the log (two runs at once would both take the next sequence): that one fails, and its rerun
    finds the other's filing."""
    import pandas as pd

    from derivlake.reports.output import replace_day

    rows = [
        {"as_of_date": day.as_of, "report": f.report, "sequence": f.sequence, "file_name": f.path.name,
         "sha256": f.sha256, "records": f.records, "new_records": f.new_records,
         "cancelled_records": f.cancelled_records, "generated_at": f.generated_at}
        for f, _ in out if f.filed_now
    ]  # fmt: skip
    if not rows:
        return
    frames = {"regulatory_files": pd.DataFrame(rows)}
    if actions is not None:
        frames["rts22_filed"] = actions[["as_of_date", "sequence", "action", "tx_id", "content_hash"]]
    seen = len(log_files)

    def unchanged() -> None:
        now_logged = len(con.execute(_sql("filed.sql", day)).fetchall())
        if now_logged != seen:
            raise ExportError(
                f"another run filed regulatory files of {day.as_of} meanwhile ({now_logged - seen} more): "
                "rerun to see whether anything is left to file"
            )

    what = f"file the regulatory files of {day.as_of}"
    replace_day(con, day.as_of, frames, lake, what, delete_first=False, precheck=unchanged)


def _rts_file(
    actions: pd.DataFrame,
    current: pd.DataFrame,
    reg: RegulatorySettings,
    as_of: date,
    seq: int,
    created: datetime,
    *,
    filed_now: bool,
) -> tuple[FiledFile, bytes]:
    stem = file_stem(RTS22, reg, as_of, seq)
    xml = render_rts22(actions, current, reg, stem, created)
    n_cxl = int((actions["action"] == CXL).sum())
    f = FiledFile(RTS22, seq, Path(f"{stem}.xml"), hashlib.sha256(xml).hexdigest(), len(actions),
                  len(actions) - n_cxl, n_cxl, created, filed_now)  # fmt: skip
    return f, xml


def _write(f: FiledFile, data: bytes, reg: RegulatorySettings, as_of: date, exports_dir: Path) -> FiledFile:
    """Write the file and its manifest whole. A standing file on disk must be the one filed."""
    from derivlake.reports.output import write_text

    folder = Path(exports_dir) / as_of.isoformat()
    path = folder / f.path.name
    if path.exists() and not f.filed_now and hashlib.sha256(path.read_bytes()).hexdigest() != f.sha256:
        raise ExportError(
            f"{path} differs from the file filed as {f.report} sequence {f.sequence}: it was altered"
        )
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    manifest = json.dumps(f.manifest(reg, as_of), indent=2, sort_keys=True) + "\n"
    write_text(manifest, folder / f"{path.stem}.manifest.json")
    return FiledFile(f.report, f.sequence, path, f.sha256, f.records, f.new_records, f.cancelled_records,
                     f.generated_at, f.filed_now)  # fmt: skip
