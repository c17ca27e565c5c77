"""`python -m derivlake ...`: the same code paths as the DAGs, for operators and tests.

Each command group lives in its own module with `add_arguments(parser)` and `run(args) -> int`,
imported only when that group is used, so `broker status` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# command -> module providing add_arguments(parser) and run(args)
COMMANDS: dict[str, tuple[str, str]] = {
    "broker": ("derivlake.broker_cli", "run the embedded Kafka-compatible broker (start|stop|status)"),
    "feed": ("derivlake.feed.cli", "produce market and desk data into the topics (simulate|replay|deribit)"),
    "drain": ("derivlake.ingest.cli", "one bounded drain of Kafka topics into the lake"),
    "quarantine": (
        "derivlake.ingest.quarantine_cli",
        "replay quarantined messages that today's normalizer accepts into the lake",
    ),
    "report": ("derivlake.reports.cli", "build an end-of-day product for a business date"),
    "sql": ("derivlake.lake.sql_cli", "read-only SQL on the lake"),
    "maintain": ("derivlake.lake.maintenance_cli", "compact the lake, expire snapshots, record table stats"),
    "status": (
        "derivlake.lake.status_cli",
        "what the lake holds and how ingestion is doing (as the UI's page)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m derivlake", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text)
        try:
            importlib.import_module(module).add_arguments(sp)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            sp.set_defaults(_unavailable=f"`{name}` is not available in this build ({module} missing)")
        sp.set_defaults(_module=module)
    return parser


def _not_printed(record: logging.LogRecord) -> bool:
    """A result the command prints on stdout is not logged on stderr too (a terminal shows both)."""
    return not getattr(record, "shown_by_cli", False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    stderr.addFilter(_not_printed)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[stderr])
    if getattr(args, "_unavailable", None):
        print(f"error: {args._unavailable}", file=sys.stderr)
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
