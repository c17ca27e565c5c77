"""`python -m derivlake report chain|margin|exports --date YYYY-MM-DD`: the DAGs' code paths, by hand."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

    from derivlake.config import LakeSettings

PRODUCTS = ("chain", "margin", "exports")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("product", choices=PRODUCTS, help="the end-of-day product to build")
    parser.add_argument("--date", required=True, help="business date D (the day [D-1 08:00, D 08:00) UTC)")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML report (chain, margin)")


def run(args: argparse.Namespace) -> int:
    from derivlake.config import LakeSettings
    from derivlake.lake.catalog import open_lake, require_lake
    from derivlake.reports.completeness import first_quote_time, resolve_as_of_date

    settings = LakeSettings.from_env()
    require_lake(settings)  # a report of a lake no drain has begun would be empty: say so instead
    con = open_lake(settings)
    try:
        now = datetime.now(UTC).replace(tzinfo=None)
        as_of = resolve_as_of_date(args.date, default=now.date(), now=now, first_quote=first_quote_time(con))
        if args.product == "margin":
            return _margin(con, as_of, settings, html=not args.no_html)
        if args.product == "exports":
            return _exports(con, as_of, settings)
        from derivlake.reports.chain import build_chain

        result = build_chain(con, as_of, reports_dir=settings.reports_dir, html=not args.no_html)
    finally:
        con.close()
    print(f"reports.options_chain {as_of}: {result.series} rows")
    print(f"reports.options_chain_expiry {as_of}: {result.expiry_count} rows")
    for path in (result.csv_path, result.html_path):
        if path is not None:
            print(path)
    return 0


def _margin(con: duckdb.DuckDBPyConnection, as_of: date, settings: LakeSettings, *, html: bool) -> int:
    from derivlake.reports.margin import build_margin

    result = build_margin(con, as_of, reports_dir=settings.reports_dir, html=html)
    summary = result.summary()
    print(f"reports.margin_accounts {as_of}: {len(result.accounts)} rows ({summary['accounts']} accounts)")
    print(f"reports.margin_positions {as_of}: {len(result.positions)} rows"
          f" ({summary['unpriced_positions']} unpriced)")  # fmt: skip
    print(f"margin calls: {summary['margin_calls']}")
    for path in result.files:
        print(path)
    return 0


def _exports(con: duckdb.DuckDBPyConnection, as_of: date, settings: LakeSettings) -> int:
    from derivlake.regulatory.exports import build_exports

    result = build_exports(con, as_of, exports_dir=settings.exports_dir)
    for f in result.files:
        state = "filed now" if f.filed_now else "unchanged, already filed"
        print(f"{f.report} {as_of} sequence {f.sequence}: {f.records} records ({f.new_records} new, "
              f"{f.cancelled_records} cancelled), {state}")  # fmt: skip
        print(f.path)
    return 0
