"""`python -m derivlake drain [--topic T] [--reset-offsets earliest|latest]`."""

from __future__ import annotations

import argparse
import json

from derivlake.config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", action="append", help="topic name or kind (repeatable; default: all)")
    parser.add_argument(
        "--reset-offsets",
        choices=["earliest", "latest"],
        default=None,
        help="accept an out-of-range stored offset and restart there (recorded in ops)",
    )
    parser.add_argument("--json", action="store_true", help="print each result as JSON")


def run(args: argparse.Namespace) -> int:
    from derivlake.ingest.drain import drain_topic

    settings = Settings.from_env()
    topics = args.topic or [t.kind for t in settings.kafka.topics]
    failures = 0
    for topic in topics:
        try:
            result = drain_topic(settings.kafka, settings.lake, topic, settings.drain, args.reset_offsets)
        except Exception as exc:
            failures += 1
            print(f"{topic}: FAILED: {exc}")
            continue
        if args.json:
            print(json.dumps(result.as_metadata()))
        else:
            print(result.summary())
    return 1 if failures else 0
