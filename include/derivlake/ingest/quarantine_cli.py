"""`python -m derivlake quarantine replay [--topic T] [--reason PREFIX] [--dry-run]`."""

from __future__ import annotations

import argparse

from derivlake.config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    replay = sub.add_parser(
        "replay", help="move the quarantined messages today's normalizer accepts into the lake"
    )
    replay.add_argument("--topic", action="append", help="topic name or kind (repeatable; default: all)")
    replay.add_argument(
        "--reason", default="", help="only reasons starting with this, e.g. unknown_instrument"
    )
    replay.add_argument("--dry-run", action="store_true", help="say what would be released; change nothing")


def run(args: argparse.Namespace) -> int:
    from derivlake.ingest.quarantine import replay_quarantine

    settings = Settings.from_env()
    for topic in args.topic or [t.kind for t in settings.kafka.topics]:
        result = replay_quarantine(
            settings.kafka, settings.lake, topic, settings.drain, args.reason, args.dry_run
        )
        print(result.summary())
    return 0
