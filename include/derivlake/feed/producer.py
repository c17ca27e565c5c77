"""Where the feeds write: an idempotent Kafka producer that accounts for every delivery, or a list.

A feed that drops messages silently would make every downstream count meaningless, so the Kafka sink
counts every delivery report: the first failed one (or a produce the client refuses, e.g. after a fatal
idempotence error) raises `DeliveryFailed` from the next send, so a long-running feed stops at once for its
supervisor to restart, and `close()` raises it with the final number lost (`sent - acked`).
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
    """Some messages were not acknowledged by the broker; `lost` says how many (so far, if not `final`)."""

    def __init__(self, lost: int, first_error: str, broker: str = "", final: bool = True) -> None:
        by = f"the broker {broker}" if broker else "the broker"
        what = "lost" if final else "lost so far (stopping the feed)"
        super().__init__(f"{lost} message(s) {what}: not acknowledged by {by} (first error: {first_error})")
        self.lost = lost
        self.first_error = first_error
        self.broker = broker
        self.final = final


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
POLL_EVERY_S = 0.5  # longest a slow feed goes without serving delivery reports

# The producer's tuning. A setting of KAFKA_EXTRA_CONFIG (or a librdkafka alias of it) wins over these: the
# operator knows their broker (e.g. `enable.idempotence: false` where it lacks IdempotentWrite).
PRODUCER_DEFAULTS: dict[str, object] = {
    "enable.idempotence": True,
    "linger.ms": 20,
    "batch.num.messages": 10000,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
}
_ALIASES: dict[str, tuple[str, ...]] = {
    "linger.ms": ("queue.buffering.max.ms",),
    "compression.type": ("compression.codec",),
}


def producer_config(settings: KafkaSettings, overrides: dict[str, object] | None = None) -> dict[str, object]:
    """librdkafka config of the feeds' producer: defaults < the settings' extra < the caller's overrides."""
    extra = settings.extra
    defaults = {
        k: v
        for k, v in PRODUCER_DEFAULTS.items()
        if k not in extra and not any(a in extra for a in _ALIASES.get(k, ()))
    }
    return settings.client_config(**{**defaults, **(overrides or {})})


class KafkaSink:
    """Idempotent, batching producer; counts per topic, logs progress, raises on any lost message.

    Every message carries a delivery callback that counts it `acked` or failed; only marked messages keep
    their (topic, partition, offset). `sent` counts every message handed to the sink, so after `close()`
    `lost = sent - acked` covers failed reports, messages still queued at the flush timeout and messages
    the client refused: nothing leaves unaccounted for.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        overrides: dict[str, object] | None = None,
        flush_timeout_s: float = 60.0,
        progress_every_s: float = 5.0,
    ) -> None:
        from confluent_kafka import KafkaException, Producer

        self._producer = Producer(logged(producer_config(settings, overrides)))
        self._refusal = KafkaException  # an `except` operand is evaluated only when something is raised
        self.broker = settings.bootstrap_servers
        self.flush_timeout_s = flush_timeout_s
        self.progress_every_s = progress_every_s
        self.delivered: list[Delivered] = []
        self.sent = 0  # handed to the sink
        self.acked = 0  # delivery report came back clean
        self.failed = 0  # delivery report came back with an error, or the client refused the message
        self.first_error = ""
        self.per_topic: Counter[str] = Counter()
        self._t0 = time.monotonic()
        self._next_log = self._t0 + progress_every_s
        self._poll_due = self._t0 + POLL_EVERY_S
        self._since_poll = 0
        self._closed = False

        def on_delivery(err: object, msg: object) -> None:
            if err is None:
                self.acked += 1
            else:
                self._failed(err)

        self._on_delivery = on_delivery

    @property
    def lost(self) -> int:
        """Failed so far while running; after `close()` every message not acknowledged."""
        return self.sent - self.acked if self._closed else self.failed

    def summary(self) -> str:
        return f"delivered {self.acked} of {self.sent} messages to {self.broker}, {self.lost} lost"

    def _failed(self, err: object) -> None:
        self.failed += 1
        if not self.first_error:
            self.first_error = str(err)

    def _check(self) -> None:
        """Stop the feed at the first failed delivery: a supervisor restarts it, instead of a feed that
        keeps running while everything it sends is lost (e.g. after a broker restart)."""
        if self.failed:
            log.error("delivery to %s failed: %s; stopping the feed", self.broker, self.first_error)
            raise DeliveryFailed(self.failed, self.first_error, self.broker, final=False)

    def _refused(self, exc: Exception) -> DeliveryFailed:
        """The client refused a produce (a fatal error such as an idempotence failure): that message and
        the rest of its batch are lost; `close()` settles the ones already queued."""
        if not self.first_error:
            self.first_error = str(exc)
        self.failed += 1
        return DeliveryFailed(self.failed, str(exc), self.broker, final=False)

    def _on_marked(self, err: object, msg: object, mark: str) -> None:
        if err is not None:
            self._failed(err)
            return
        self.acked += 1
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
                self._check()

    def send(self, topic: str, key: bytes, value: bytes, headers: Headers, mark: str | None = None) -> None:
        self.sent += 1
        self.per_topic[topic] += 1
        try:
            self._produce_retrying(topic, key, value, headers, self._callback(mark))
        except self._refusal as exc:
            raise self._refused(exc) from exc
        self._since_poll += 1
        # every 1000 messages, and at least every POLL_EVERY_S for a slow feed (the bridge): a failed
        # delivery must stop the feed soon, not after another thousand messages
        if self._since_poll >= 1000 or time.monotonic() >= self._poll_due:
            self._since_poll = 0
            self._poll_due = time.monotonic() + POLL_EVERY_S
            self._producer.poll(0)
            self._progress()
            self._check()

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
        # counted first: a batch the client refuses halfway is lost as a whole (sent, never acked)
        self.sent += len(topics)
        self.per_topic.update(topics)
        try:
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
        except self._refusal as exc:
            raise self._refused(exc) from exc
        self._producer.poll(0)
        self._progress()
        self._check()

    def _progress(self) -> None:
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + self.progress_every_s
            rate = self.sent / max(now - self._t0, 1e-9)
            log.info(
                "produced %d messages (%d acked, %d lost), %.0f msg/s", self.sent, self.acked, self.lost, rate
            )

    def close(self) -> None:
        """Wait for every delivery report (once; later calls only re-check); raise `DeliveryFailed` if any
        message was not acknowledged."""
        if not self._closed:
            remaining = self._producer.flush(self.flush_timeout_s)
            if remaining:
                self.first_error = (
                    self.first_error or f"{remaining} still queued after {self.flush_timeout_s}s"
                )
            self._closed = True
            elapsed = time.monotonic() - self._t0
            log.info(
                "done: %d messages in %.1fs (%.0f msg/s), %d acked, %d lost",
                self.sent,
                elapsed,
                self.sent / max(elapsed, 1e-9),
                self.acked,
                self.lost,
            )
        if self.lost:
            raise DeliveryFailed(self.lost, self.first_error or "not acknowledged", self.broker)
