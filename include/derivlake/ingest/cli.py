"""`python -m derivlake drain [--topic T] [--reset-offsets earliest|latest]`."""

from __future__ import annotations

import argparse
import json

from derivlake.config import TOPIC_KINDS, KafkaSettings, Settings

TOPIC_HELP = (
    f"a topic kind ({', '.join(kind for kind, _, _ in TOPIC_KINDS)}) or a topic's full name "
    "(DERIVLAKE_TOPIC_PREFIX + kind); repeatable; default: all"
)


def checked_topics(kafka: KafkaSettings, asked: list[str] | None) -> list[str]:
    """The --topic values (default: every kind), each checked before anything runs: an unknown one
    used to be reported only after the topics before it had been drained."""
    if not asked:
        return [t.kind for t in kafka.topics]
    for topic in asked:
        kafka.topic(topic)  # ConfigError naming the value and what is accepted
    return asked


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", action="append", help=TOPIC_HELP)
    parser.add_argument(
        "--reset-offsets",
        choices=["earliest", "latest"],
        default=None,
        help="accept an out-of-range stored offset and restart there (recorded in ops)",
    )
    parser.add_argument("--json", action="store_true", help="print each result as JSON")


def run(args: argparse.Namespace) -> int:
    from derivlake.ingest.drain import drain_topic
    from derivlake.kafka_io import BROKER_HINT, BrokerUnavailable

    settings = Settings.from_env()
    topics = checked_topics(settings.kafka, args.topic)
    failures = 0
    for topic in topics:
        try:
            result = drain_topic(settings.kafka, settings.lake, topic, settings.drain, args.reset_offsets)
        except Exception as exc:
            failures += 1
            hint = f"; is the broker up? {BROKER_HINT}" if isinstance(exc, BrokerUnavailable) else ""
            text = str(exc).removeprefix(f"{settings.kafka.topic(topic).name}: ")  # named at the line's start
            print(f"{topic}: FAILED: {text}{hint}")
            continue
        if args.json:
            print(json.dumps(result.as_metadata()))
        else:
            print(result.summary())
    return 1 if failures else 0
