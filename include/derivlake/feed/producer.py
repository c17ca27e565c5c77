"""Where the feeds write: an idempotent Kafka producer that accounts for every delivery, or a list.

A feed that drops messages silently would make every downstream count meaningless, so the Kafka sink
checks every delivery report and `close()` raises `DeliveryFailed` with the number lost.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from derivlake.config import KafkaSettings

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


class DeliveryFailed(RuntimeError):
    """Some messages were not acknowledged by the broker; `lost` says how many."""

    def __init__(self, lost: int, first_error: str) -> None:
        super().__init__(
            f"{lost} message(s) lost: not acknowledged by the broker (first error: {first_error})"
        )
        self.lost = lost
        self.first_error = first_error


@dataclass(frozen=True)
class Delivered:
    """Where a marked message (e.g. an injected fault) landed, from its delivery report."""

    topic: str
    partition: int
    offset: int
    mark: str


class Sink(Protocol):
    """Destination of feed messages; `mark` tags a message whose landing place must be recorded."""

    delivered: list[Delivered]

    def send(
        self, topic: str, key: bytes, value: bytes, headers: Headers, mark: str | None = None
    ) -> None: ...

    def close(self) -> None: ...


@dataclass
class SentMessage:
    topic: str
    key: bytes
    value: bytes
    headers: Headers


@dataclass
class ListSink:
    """In-memory sink for unit tests; a marked message's `offset` is its index in `messages`."""

    messages: list[SentMessage] = field(default_factory=list)
    delivered: list[Delivered] = field(default_factory=list)

    def send(self, topic: str, key: bytes, value: bytes, headers: Headers, mark: str | None = None) -> None:
        if mark is not None:
            self.delivered.append(Delivered(topic, 0, len(self.messages), mark))
        self.messages.append(SentMessage(topic, key, value, headers))

    def close(self) -> None:
        return None


PRODUCER_DEFAULTS: dict[str, object] = {
    "enable.idempotence": True,
    "linger.ms": 20,
    "batch.num.messages": 10000,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
}


class KafkaSink:
    """Idempotent, batching producer; counts per topic, logs progress, raises on any lost message."""

    def __init__(
        self,
        settings: KafkaSettings,
        overrides: dict[str, object] | None = None,
        flush_timeout_s: float = 60.0,
        progress_every_s: float = 5.0,
    ) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(settings.client_config(**{**PRODUCER_DEFAULTS, **(overrides or {})}))
        self.flush_timeout_s = flush_timeout_s
        self.progress_every_s = progress_every_s
        self.delivered: list[Delivered] = []
        self.sent = 0
        self.acked = 0
        self.lost = 0
        self.first_error = ""
        self.per_topic: Counter[str] = Counter()
        self._t0 = time.monotonic()
        self._next_log = self._t0 + progress_every_s
        self._since_poll = 0

    def _on_delivery(self, err: object, msg: object, mark: str | None = None) -> None:
        if err is not None:
            self.lost += 1
            if not self.first_error:
                self.first_error = str(err)
            return
        self.acked += 1
        if mark is not None:
            self.delivered.append(Delivered(msg.topic(), msg.partition(), msg.offset(), mark))  # type: ignore[attr-defined]

    def send(self, topic: str, key: bytes, value: bytes, headers: Headers, mark: str | None = None) -> None:
        cb = self._on_delivery if mark is None else (lambda e, m, k=mark: self._on_delivery(e, m, k))
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=cb)
                break
            except BufferError:  # local queue full: let the broker catch up
                self._producer.poll(0.05)
        self.sent += 1
        self.per_topic[topic] += 1
        self._since_poll += 1
        if self._since_poll >= 1000:
            self._since_poll = 0
            self._producer.poll(0)
            now = time.monotonic()
            if now >= self._next_log:
                self._next_log = now + self.progress_every_s
                rate = self.sent / max(now - self._t0, 1e-9)
                log.info(
                    "produced %d messages (%d acked, %d lost), %.0f msg/s",
                    self.sent,
                    self.acked,
                    self.lost,
                    rate,
                )

    def close(self) -> None:
        """Wait for every delivery report; raise `DeliveryFailed` if any message was not acknowledged."""
        remaining = self._producer.flush(self.flush_timeout_s)
        if remaining:
            self.lost += remaining
            self.first_error = self.first_error or f"{remaining} still queued after {self.flush_timeout_s}s"
        elapsed = time.monotonic() - self._t0
        log.info(
            "done: %d messages in %.1fs (%.0f msg/s), %d lost",
            self.sent,
            elapsed,
            self.sent / max(elapsed, 1e-9),
            self.lost,
        )
        if self.lost:
            raise DeliveryFailed(self.lost, self.first_error)
