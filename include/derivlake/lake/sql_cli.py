"""`python -m derivlake sql "QUERY" [--format table|csv|json|parquet] [--output FILE]`.

The lake is attached READ-ONLY: analysts cannot change it by accident. Without a query, an interactive
prompt reads statements ending in `;` (also from a pipe), `.quit` to leave.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from derivlake.config import LakeSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", nargs="?", help="SQL to run; omit for an interactive prompt")
    parser.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    parser.add_argument("--output", type=Path, help="write the result to FILE (required for parquet)")
    parser.add_argument("--max-rows", type=int, default=100, help="rows shown by the table format")


def render_table(columns: list[str], rows: list[tuple], total: int) -> str:
    """Aligned columns, numbers to the right, NULL shown as such, and the row count."""

    def cell(v: object) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, float):
            return f"{v:.10g}"
        return str(v)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(columns)]
    numeric = [
        bool(rows) and all(isinstance(r[i], int | float) or r[i] is None for r in rows)
        for i in range(len(columns))
    ]
    fmt = lambda vals: "  ".join(  # noqa: E731
        v.rjust(w) if num else v.ljust(w) for v, w, num in zip(vals, widths, numeric, strict=True)
    ).rstrip()
    lines = [fmt(columns), "  ".join("-" * w for w in widths)] + [fmt(r) for r in body]
    more = f" (showing {len(rows)})" if total > len(rows) else ""
    lines.append(f"({total} row{'s' if total != 1 else ''}{more})")
    return "\n".join(lines)


def run_query(con, query: str, fmt: str, output: Path | None, max_rows: int, out: TextIO) -> None:
    if fmt == "parquet":
        if output is None:
            raise ValueError("--format parquet needs --output FILE")
        con.execute(f"COPY ({query}) TO '{output}' (FORMAT parquet)")
        print(f"wrote {output}", file=out)
        return
    if fmt in ("csv", "json"):
        rel = con.sql(query)
        if output is not None:
            if fmt == "csv":
                rel.write_csv(str(output))
            else:
                con.execute(f"COPY ({query}) TO '{output}' (FORMAT json, ARRAY true)")
            print(f"wrote {output}", file=out)
            return
        df = rel.df()
        out.write(
            df.to_csv(index=False) if fmt == "csv" else df.to_json(orient="records", date_format="iso") + "\n"
        )
        return
    rel = con.sql(query)
    if rel is None:  # a statement without a result (SET, PRAGMA, ...)
        return
    columns = rel.columns
    total = rel.count("*").fetchone()[0] if max_rows else 0
    text = render_table(columns, rel.limit(max_rows).fetchall(), total)
    if output is not None:
        output.write_text(text + "\n")
        print(f"wrote {output}", file=out)
    else:
        print(text, file=out)


def interactive(con, args: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    tty = stdin.isatty()
    buffer: list[str] = []
    failures = 0
    while True:
        if tty:
            print("lake> " if not buffer else "  ... ", end="", file=out, flush=True)
        line = stdin.readline()
        if not line:
            break
        if not buffer and line.strip() in (".quit", ".exit", r"\q"):
            break
        buffer.append(line)
        if line.rstrip().endswith(";"):
            query = "".join(buffer).strip().rstrip(";")
            buffer = []
            try:
                run_query(con, query, args.format, None, args.max_rows, out)
            except Exception as exc:
                failures += 1
                print(f"error: {str(exc).splitlines()[0]}", file=out)
    return 1 if failures and not tty else 0


def run(args: argparse.Namespace) -> int:
    from derivlake.lake.catalog import open_lake

    con = open_lake(LakeSettings.from_env(), read_only=True)
    try:
        if args.query is None:
            return interactive(con, args, sys.stdin, sys.stdout)
        try:
            run_query(con, args.query, args.format, args.output, args.max_rows, sys.stdout)
        except Exception as exc:
            print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
        return 0
    finally:
        con.close()
