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

import contextlib
import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from derivlake.config import LakeSettings
from derivlake.regulatory.filing_state import FilingState, filing_state
from derivlake.regulatory.records import ExportError, cftc_records
from derivlake.regulatory.rts22 import validate_rts22_file
from derivlake.regulatory.settings import RegulatorySettings
from derivlake.reports.chain import BusinessDay

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).with_name("sql")
RTS22, CFTC17 = "RTS22", "CFTC17"


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
# Build, file, write


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    from derivlake.lake.schema_sync import ensure_tables as ensure

    ensure(con, SQL_DIR / "regulatory_tables.sql")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def build_exports(
    con_or_settings: duckdb.DuckDBPyConnection | LakeSettings,
    as_of: date,
    *,
    exports_dir: Path | None = None,
    settings: RegulatorySettings | None = None,
) -> ExportResult:
    """File (or confirm) the regulatory files of business day `as_of` under `exports_dir/<D>/` (given
    LakeSettings: its exports_dir), with manifests.

    Memory is bounded by configuration, not by the day's executions: the fills are read twice in chunks of
    `RegulatorySettings.chunk_rows` (their ids and content hashes, then the records to file), what each
    transaction needs between the passes is kept in DuckDB tables (`filing_state`, under DuckDB's memory
    limit), and the XML is written and validated as a stream."""
    from derivlake.reports.margin import ensure_tables as ensure_margin_tables
    from derivlake.reports.output import day_rows, removed_on_failure, report_connection

    reg = settings or RegulatorySettings.from_env()
    day = BusinessDay(as_of)
    if isinstance(con_or_settings, LakeSettings) and exports_dir is None:
        exports_dir = con_or_settings.exports_dir
    if exports_dir is None:
        raise ValueError("build_exports needs exports_dir with a connection")
    folder = Path(exports_dir) / as_of.isoformat()
    with report_connection(con_or_settings, None, f"exports {as_of}") as (con, lake, _):
        ensure_margin_tables(con)
        ensure_tables(con)
        if day_rows(con, "margin_accounts", as_of) == 0:
            raise ExportError(
                f"the margin report of {as_of} is not in the lake, and it holds the positions of the CFTC "
                f"file: build it first (the eod_margin DAG, or `python -m derivlake report margin --date {as_of}`)"
            )
        records = cftc_records(con.execute(_sql("cftc_positions.sql", day)).df(), as_of, reg)
        log_files = con.execute(_sql("filed.sql", day)).df()
        now = _now()
        folder.mkdir(parents=True, exist_ok=True)
        with filing_state(con) as state:
            rts, actions = _rts22_filing(state, day, reg, log_files, folder, now)
            with removed_on_failure(*(tmp for _, tmp in rts)):
                out = [*rts, _cftc_filing(records, log_files, reg, as_of, now, folder)]
            _log_filing(con, lake, day, out, actions, log_files)
    with removed_on_failure(*(tmp for _, tmp in out)):
        written = tuple(_write(f, tmp, reg, as_of) for f, tmp in out)
    for f in written:
        log.info(
            "%s %s: sequence %d, %d records (%d new, %d cancelled), %s",
            f.report, as_of, f.sequence, f.records, f.new_records, f.cancelled_records,
            "filed now" if f.filed_now else "unchanged",
        )  # fmt: skip
    return ExportResult(as_of, written)


def _rts22_filing(
    state: FilingState,
    day: BusinessDay,
    reg: RegulatorySettings,
    log_files: pd.DataFrame,
    folder: Path,
    now: datetime,
) -> tuple[list[tuple[FiledFile, Path]], duckdb.DuckDBPyRelation | None]:
    """The RTS 22 file, rendered to a temporary path (none for a day without executions), and the actions
    to log (None when the standing file stands: it is rendered again from the log, byte for byte)."""
    sql = _sql("rts22_fills.sql", day)
    executions = state.hash_transactions(sql, reg)
    rts = log_files[log_files["report"] == RTS22]
    if rts.empty and not executions:
        log.info("RTS22 %s: no executions in the business day, nothing to report", day.as_of)
        return [], None
    counts = state.plan_changes(day.as_of)
    if rts.empty or counts.total:
        seq, created, filed_now = _next_sequence(rts), now, True
        logged = state.log_rows(day.as_of, seq)
    else:
        last = rts.iloc[-1]
        seq, created, filed_now = int(last["sequence"]), last["generated_at"].to_pydatetime(), False
        counts, logged = state.take_filed(day.as_of, seq), None
    stem = file_stem(RTS22, reg, day.as_of, seq)
    tmp = folder / f"{stem}.xml.tmp"
    header_id = stem.replace(f"_{reg.entity_lei}", "")  # BizMsgIdr: 35 characters at most
    with _writing(tmp, logged=False), tmp.open("wb") as out:
        n = state.render(out, sql, reg, header_id, created)
    if n != counts.total:
        tmp.unlink()
        raise ExportError(
            f"{stem}.xml: the fills of {day.as_of} changed while it was built ({counts.total} transactions "
            f"planned, {n} rendered); nothing was filed: rerun"
        )
    errors = validate_rts22_file(tmp, con=state.con)
    if errors:
        tmp.unlink()
        raise ExportError(f"{stem}.xml fails validation ({len(errors)} errors): {'; '.join(errors[:10])}")
    f = FiledFile(RTS22, seq, folder / f"{stem}.xml", file_sha256(tmp), n, counts.new, counts.cancelled,
                  created, filed_now)  # fmt: skip
    if not filed_now and f.sha256 != rts.iloc[-1]["sha256"]:
        filed_sha = str(rts.iloc[-1]["sha256"])
        if f.path.exists() and file_sha256(f.path) == filed_sha:
            # rendered by a release that wrote a different format (a <Cxl> without the <SubmitgPty> ESMA
            # requires, before 2026-12-03): the filed file stands as it was filed, intact on disk
            log.warning("%s renders differently today (an earlier release's format); the filed file stands",
                        f.path.name)  # fmt: skip
            with _writing(tmp, logged=False):
                shutil.copyfile(f.path, tmp)
            return [(dataclasses.replace(f, sha256=filed_sha), tmp)], logged
        tmp.unlink()
        raise ExportError(
            f"{f.path.name} rendered again differs from the file filed as sequence {seq}: the filing log "
            "and the fills disagree (a fill changed without a content change?), or an earlier release "
            "wrote the file in another format; nothing was written: restore the filed file from a copy"
        )
    return [(f, tmp)], logged


def _cftc_filing(
    records: list[str],
    log_files: pd.DataFrame,
    reg: RegulatorySettings,
    as_of: date,
    now: datetime,
    folder: Path,
) -> tuple[FiledFile, Path]:
    """The position file: a snapshot, filed again whole when it differs from the last one filed."""
    text = "".join(line + "\n" for line in records).encode("ascii")
    digest = hashlib.sha256(text).hexdigest()
    cftc = log_files[log_files["report"] == CFTC17]
    if cftc.empty or cftc.iloc[-1]["sha256"] != digest:
        seq = _next_sequence(cftc)
        path = folder / f"{file_stem(CFTC17, reg, as_of, seq)}.txt"
        f = FiledFile(CFTC17, seq, path, digest, len(records), len(records), 0, now, True)
    else:
        last = cftc.iloc[-1]
        f = FiledFile(CFTC17, int(last["sequence"]), folder / last["file_name"], digest, len(records),
                      int(last["new_records"]), 0, last["generated_at"].to_pydatetime(), False)  # fmt: skip
    tmp = f.path.with_name(f.path.name + ".tmp")
    with _writing(tmp, logged=False):
        tmp.write_bytes(text)
    return f, tmp


def _next_sequence(filed: pd.DataFrame) -> int:
    """The sequence after the last one `filed` (one report's rows of the day's log): 1 on a day's first."""
    return int(filed["sequence"].max()) + 1 if not filed.empty else 1


def _log_filing(
    con: duckdb.DuckDBPyConnection,
    lake: LakeSettings | None,
    day: BusinessDay,
    out: list[tuple[FiledFile, Path]],
    actions: duckdb.DuckDBPyRelation | None,
    log_files: pd.DataFrame,
) -> None:
    """Log the files filed now in one transaction, provided no other run filed any of the day's since this
    one read the log (two runs at once would both take the next sequence): that one fails, and its rerun
    finds the other's filing."""
    import pandas as pd

    from derivlake.reports.output import removed_on_failure, replace_day

    rows = [
        {"as_of_date": day.as_of, "report": f.report, "sequence": f.sequence, "file_name": f.path.name,
         "sha256": f.sha256, "records": f.records, "new_records": f.new_records,
         "cancelled_records": f.cancelled_records, "generated_at": f.generated_at}
        for f, _ in out if f.filed_now
    ]  # fmt: skip
    if not rows:
        return
    frames: dict[str, pd.DataFrame | duckdb.DuckDBPyRelation] = {"regulatory_files": pd.DataFrame(rows)}
    if actions is not None:
        frames["rts22_filed"] = actions
    seen = len(log_files)

    def unchanged() -> None:
        now_logged = len(con.execute(_sql("filed.sql", day)).fetchall())
        if now_logged != seen:
            raise ExportError(
                f"another run filed regulatory files of {day.as_of} meanwhile ({now_logged - seen} more): "
                "rerun to see whether anything is left to file"
            )

    what = f"file the regulatory files of {day.as_of}"
    with removed_on_failure(*(tmp for _, tmp in out)):
        replace_day(con, day.as_of, frames, lake, what, delete_first=False, precheck=unchanged)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write(f: FiledFile, tmp: Path, reg: RegulatorySettings, as_of: date) -> FiledFile:
    """Put the rendered file in place and write its manifest. A standing file on disk must be the one
    filed: an altered one is refused, not overwritten."""
    from derivlake.reports.output import write_text

    if f.path.exists() and not f.filed_now and file_sha256(f.path) != f.sha256:
        tmp.unlink(missing_ok=True)
        raise ExportError(
            f"{f.path} differs from the file filed as {f.report} sequence {f.sequence}: it was altered"
        )
    with _writing(tmp, logged=True):
        tmp.replace(f.path)
    manifest = f.path.with_name(f"{f.path.stem}.manifest.json")
    with _writing(manifest.with_name(f"{manifest.name}.tmp"), logged=True):
        write_text(json.dumps(f.manifest(reg, as_of), indent=2, sort_keys=True) + "\n", manifest)
    return f


@contextlib.contextmanager
def _writing(tmp: Path, *, logged: bool) -> Iterator[None]:
    """A file that cannot be written (a full disk, a read-only folder) fails the run naming it and what
    became of the filing; its temporary file is removed."""
    from derivlake.reports.output import removed_on_failure

    try:
        with removed_on_failure(tmp):
            yield
    except OSError as exc:
        then = (
            "it is logged as filed, and the next run writes it again, byte for byte"
            if logged
            else "nothing was filed; rerun once it can be written"
        )
        raise ExportError(f"cannot write {tmp.with_suffix('')}: {exc.strerror or exc}; {then}") from exc
