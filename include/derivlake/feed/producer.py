"""Where the feeds write: an idempotent Kafka producer that accounts for every delivery, or a list.

A feed that drops messages silently would make every downstream count meaningless, so the Kafka sink
checks every delivery report and `close()` raises `DeliveryFailed` with the number lost.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from derivlake.config import KafkaSettings
from derivlake.kafka_log import logged

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


def send_each(
    sink: Sink,
    topics: Sequence[str],
    keys: Sequence[bytes],
    values: Sequence[bytes],
    headers: Sequence[Headers],
    marks: Sequence[str | None] | None = None,
) -> None:
    """A batch through `sink.send`, one message at a time (what `send_many` means for any sink)."""
    if marks is None:
        for topic, key, value, hdrs in zip(topics, keys, values, headers, strict=True):
            sink.send(topic, key, value, hdrs)
    else:
        for topic, key, value, hdrs, mark in zip(topics, keys, values, headers, marks, strict=True):
            sink.send(topic, key, value, hdrs, mark)


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

    def send_many(
        self,
        topics: Sequence[str],
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Sequence[Headers],
        marks: Sequence[str | None] | None = None,
    ) -> None:
        send_each(self, topics, keys, values, headers, marks)

    def close(self) -> None:
        return None


# Producer.produce's parameters in order are (topic, value, key, partition, callback, on_delivery, timestamp,
# headers); passed by position they skip the keyword parsing, a fifth of the call. -1 is librdkafka's
# "partitioner decides" and timestamp 0 is "now", both the defaults of the keyword form.
_ANY_PARTITION = -1

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
    """Idempotent, batching producer; counts per topic, logs progress, raises on any lost message.

    Every message carries a delivery callback; a success costs one call that only checks `err`, a
    failure is counted, and only marked messages keep their (topic, partition, offset). A message is
    acknowledged when its report came back without an error: `acked = sent - lost - still queued`.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        overrides: dict[str, object] | None = None,
        flush_timeout_s: float = 60.0,
        progress_every_s: float = 5.0,
    ) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(
            logged(settings.client_config(**{**PRODUCER_DEFAULTS, **(overrides or {})}))
        )
        self.flush_timeout_s = flush_timeout_s
        self.progress_every_s = progress_every_s
        self.delivered: list[Delivered] = []
        self.sent = 0
        self.lost = 0
        self.first_error = ""
        self.per_topic: Counter[str] = Counter()
        self._t0 = time.monotonic()
        self._next_log = self._t0 + progress_every_s
        self._since_poll = 0
        self._closed = False

        def on_delivery(err: object, msg: object) -> None:
            if err is not None:
                self._failed(err)

        self._on_delivery = on_delivery

    @property
    def acked(self) -> int:
        """Messages whose delivery report came back clean (the rest are lost or still in flight)."""
        return self.sent - self.lost - (0 if self._closed else len(self._producer))

    def _failed(self, err: object) -> None:
        self.lost += 1
        if not self.first_error:
            self.first_error = str(err)

    def _on_marked(self, err: object, msg: object, mark: str) -> None:
        if err is not None:
            self._failed(err)
            return
        self.delivered.append(Delivered(msg.topic(), msg.partition(), msg.offset(), mark))  # type: ignore[attr-defined]

    def _callback(self, mark: str | None) -> Callable[[object, object], None]:
        if mark is None:
            return self._on_delivery
        return lambda err, msg: self._on_marked(err, msg, mark)

    def _produce_retrying(
        self, topic: str, key: bytes, value: bytes, headers: Headers, cb: Callable[[object, object], None]
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, _ANY_PARTITION, cb, None, 0, headers)
                return
            except BufferError:  # local queue full: let the broker catch up
                self._producer.poll(0.05)

    def send(self, topic: str, key: bytes, value: bytes, headers: Headers, mark: str | None = None) -> None:
        self._produce_retrying(topic, key, value, headers, self._callback(mark))
        self.sent += 1
        self.per_topic[topic] += 1
        self._since_poll += 1
        if self._since_poll >= 1000:
            self._since_poll = 0
            self._producer.poll(0)
            self._progress()

    def send_many(
        self,
        topics: Sequence[str],
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Sequence[Headers],
        marks: Sequence[str | None] | None = None,
    ) -> None:
        """A batch of pre-built messages, in order; `marks` None means none is marked."""
        if type(self).send is not KafkaSink.send:  # a subclass hooks every send: keep going through it
            send_each(self, topics, keys, values, headers, marks)
            return
        if marks is None:
            produce, cb = self._producer.produce, self._on_delivery
            for topic, key, value, hdrs in zip(topics, keys, values, headers, strict=True):
                try:
                    produce(topic, value, key, _ANY_PARTITION, cb, None, 0, hdrs)
                except BufferError:  # local queue full: let the broker catch up
                    self._producer.poll(0.05)
                    self._produce_retrying(topic, key, value, hdrs, cb)
        else:
            for topic, key, value, hdrs, mark in zip(topics, keys, values, headers, marks, strict=True):
                self._produce_retrying(topic, key, value, hdrs, self._callback(mark))
        self.sent += len(topics)
        self.per_topic.update(topics)
        self._producer.poll(0)
        self._progress()

    def _progress(self) -> None:
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + self.progress_every_s
            rate = self.sent / max(now - self._t0, 1e-9)
            log.info(
                "produced %d messages (%d acked, %d lost), %.0f msg/s", self.sent, self.acked, self.lost, rate
            )

    def close(self) -> None:
        """Wait for every delivery report; raise `DeliveryFailed` if any message was not acknowledged."""
        remaining = self._producer.flush(self.flush_timeout_s)
        if remaining:
            self.lost += remaining
            self.first_error = self.first_error or f"{remaining} still queued after {self.flush_timeout_s}s"
        self._closed = True
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
