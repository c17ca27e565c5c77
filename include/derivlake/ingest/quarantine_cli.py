"""`python -m derivlake quarantine list|replay [--topic T] ...`."""

from __future__ import annotations

import argparse

from derivlake.config import Settings
from derivlake.ingest.cli import TOPIC_HELP, checked_topics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="what the quarantine holds, by topic and reason")
    replay = sub.add_parser(
        "replay", help="move the quarantined messages today's normalizer accepts into the lake"
    )
    for p in (listing, replay):
        p.add_argument("--topic", action="append", help=TOPIC_HELP)
    replay.add_argument(
        "--reason", default="", help="only reasons starting with this, e.g. unknown_instrument"
    )
    replay.add_argument("--dry-run", action="store_true", help="say what would be released; change nothing")


def run(args: argparse.Namespace) -> int:
    from derivlake.ingest.quarantine import quarantine_summary, replay_quarantine

    settings = Settings.from_env()
    topics = checked_topics(settings.kafka, args.topic)
    if args.action == "list":
        from derivlake.lake.sql_cli import render_table

        columns, rows = quarantine_summary(settings.kafka, settings.lake, topics)
        print(render_table(columns, rows, len(rows)))
        return 0
    from derivlake.lake.catalog import require_lake

    require_lake(settings.lake)  # a replay's writable open would create an empty lake
    for topic in topics:
        result = replay_quarantine(
            settings.kafka, settings.lake, topic, settings.drain, args.reason, args.dry_run
        )
        print(result.summary())
    return 0
