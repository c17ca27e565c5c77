"""Kafka client helpers shared by the broker, the feed and the drain."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from derivlake.config import KafkaSettings, TopicSpec
from derivlake.kafka_log import logged

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """No broker answered at the bootstrap servers."""


BROKER_HINT = "start one with `python -m derivlake broker start` or set KAFKA_BOOTSTRAP_SERVERS"
"""What to do about a broker that does not answer, for a command run by hand."""


def wait_for_broker(settings: KafkaSettings, timeout_s: float = 15.0) -> int:
    """Block until a metadata request is answered; returns the number of topics seen."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(logged(settings.client_config()))
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return len(admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic()))).topics)
        except Exception as exc:  # KafkaException, transport errors
            last = exc
            time.sleep(0.2)
    raise BrokerUnavailable(
        f"no Kafka broker answered at {settings.bootstrap_servers} within {timeout_s:.0f}s ({last}); "
        + BROKER_HINT
    )


def ensure_topics(settings: KafkaSettings, topics: Iterable[TopicSpec] | None = None) -> list[str]:
    """Create the missing topics; returns the names created. Existing topics are left alone."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(logged(settings.client_config()))
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [t for t in (topics or settings.topics) if t.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics([NewTopic(t.name, t.partitions, 1) for t in wanted])
    created = []
    for name, fut in futures.items():
        try:
            fut.result(timeout=15)
            created.append(name)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    log.info("created topics %s", created)
    return created


def partition_counts(settings: KafkaSettings, timeout_s: float = 10.0) -> dict[str, int]:
    """Topic name -> partitions, as the broker reports them."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(logged(settings.client_config()))
    md = admin.list_topics(timeout=timeout_s)
    return {name: len(t.partitions) for name, t in md.topics.items() if not name.startswith("__")}
