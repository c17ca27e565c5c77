"""`python -m derivlake status [--format text|json|html] [--output FILE] [--no-lag] [--check]`: the lake status
page of the Airflow UI (plugins/lake_status.py), for a terminal or a monitoring script."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from derivlake.config import KafkaSettings, LakeSettings

if TYPE_CHECKING:
    from derivlake.lake.status import LakeStatus


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json", "html"), default="text")
    parser.add_argument("--output", type=Path, help="write here instead of stdout")
    parser.add_argument("--no-lag", action="store_true", help="do not ask the brokers for their log ends")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a topic is stale (for a monitoring script)"
    )


def render_text(status: LakeStatus) -> str:
    from derivlake.lake.sql_cli import render_table
    from derivlake.lake.status import STALE_AFTER

    now = status.generated_at
    ts = lambda t, absent="-": absent if t is None else f"{t:%Y-%m-%d %H:%M:%S}"  # noqa: E731
    parts = [
        f"lake status at {now:%Y-%m-%d %H:%M:%S} UTC, snapshot {status.snapshot_id} "
        f"({status.snapshots} kept), catalog {status.catalog}",
        "",
        f"ingestion (last 24 h; STALE: messages wait and no commit in {STALE_AFTER.total_seconds() / 60:.0f} min)",
    ]
    topics = [
        (t.topic, ts(t.last_commit, "never"), ts(t.newest_event), "unknown" if t.lag is None else t.lag,
         t.messages_1h, t.messages_24h, t.rows_24h, t.quarantined_24h, t.duplicates_24h, t.late_24h,
         "STALE" if t.stale(now) else "ok")
        for t in status.topics
    ]  # fmt: skip
    columns = ["topic", "last_commit", "newest_event", "lag", "messages_1h", "messages_24h", "rows_24h",
               "quarantined", "duplicates", "late", "state"]  # fmt: skip
    parts.append(render_table(columns, topics, len(topics)))
    if status.lag_error:
        parts.append(f"lag unknown: {status.lag_error}")
    quarantine = [(q.topic, q.reason, q.messages, q.example, ts(q.last_at)) for q in status.quarantine]
    parts += ["", "quarantine (last 24 h; example = partition:offset in ops.quarantine)"]
    parts.append(
        render_table(["topic", "reason", "messages", "example", "last_at"], quarantine, len(quarantine))
    )
    tables = [
        (t.table, t.files, t.bytes, t.rows, t.partitions, t.newest_partition or "-", ts(t.measured_at))
        if t.measured_at is not None
        else (t.table, t.files, t.bytes, "-", "-", "-", "not yet" if t.measurable else "not measured")
        for t in status.tables
    ]
    parts += [
        "",
        "tables (files and bytes live; rows and partitions as maintain_lake last measured them, for the "
        "date-partitioned market and desk tables)",
    ]
    columns = ["table", "files", "bytes", "rows", "partitions", "newest", "measured_at"]
    parts.append(render_table(columns, tables, len(tables)))
    chains = [(c.as_of_date, c.series, c.underlyings, ts(c.snapshot)) for c in status.chains]
    parts += ["", "end-of-day options chain (newest 7 in reports.options_chain)"]
    parts.append(render_table(["as_of_date", "series", "underlyings", "snapshot"], chains, len(chains)))
    margins = [(m.as_of_date, m.accounts, m.margin_calls, m.unpriced_positions) for m in status.margins]
    parts += ["", "end-of-day margin (newest 7 in reports.margin_accounts)"]
    parts.append(render_table(["as_of_date", "accounts", "margin_calls", "unpriced"], margins, len(margins)))
    filings = [(f.as_of_date, f.report, f.sequence, f.records, f.new_records, f.cancelled_records, f.file_name)
               for f in status.filings]  # fmt: skip
    parts += ["", "regulatory files (newest 10 in reports.regulatory_files)"]
    columns = ["as_of_date", "report", "sequence", "records", "new", "cancelled", "file"]
    parts.append(render_table(columns, filings, len(filings)))
    if status.resets:
        resets = [(r.topic, r.partition, r.old_offset, r.new_offset, r.reason, r.messages_affected, ts(r.reset_at))
                  for r in status.resets]  # fmt: skip
        parts += ["", "offset resets (newest 20)"]
        parts.append(
            render_table(
                ["topic", "partition", "from", "to", "reason", "messages", "reset_at"], resets, len(resets)
            )
        )
    return "\n".join(parts) + "\n"


def run(args: argparse.Namespace) -> int:
    from derivlake.lake.status import STALE_AFTER, read_status, render_html

    status = read_status(LakeSettings.from_env(), None if args.no_lag else KafkaSettings.from_env())
    if args.format == "json":
        text = json.dumps(status.as_dict(), indent=2, default=str) + "\n"
    elif args.format == "html":
        text = render_html(status)
    else:
        text = render_text(status)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    stale = [t.topic for t in status.topics if t.stale(status.generated_at)]
    if args.check and stale:
        print(f"stale: {', '.join(stale)} (messages wait, no commit for {STALE_AFTER})", file=sys.stderr)
        return 1
    return 0
