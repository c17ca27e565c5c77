"""Replay a Deribit capture into the topics, as the exchange sent it.

Each `ticker.*` / `book.*` notification's `data` becomes one message, each trade of a `trades.*`
notification one message (Deribit batches trades), each object of a REST `get_instruments` result one
`deribit.instruments` message; `received_at` is the capture's local receive time.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from derivlake.config import KafkaSettings
from derivlake.feed.capture import CaptureRecord, read_capture
from derivlake.feed.producer import Sink

CHANNEL_TOPICS = {"ticker": "deribit.ticker", "book": "deribit.book", "trades": "deribit.trades"}


@dataclass
class ReplayStats:
    per_channel: Counter[str] = field(default_factory=Counter)  # "ticker" | "book" | "trades" | "instruments"
    per_topic: Counter[str] = field(default_factory=Counter)  # topic kind -> messages

    @property
    def total(self) -> int:
        return sum(self.per_topic.values())


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def data_messages(record: CaptureRecord) -> list[tuple[str, str, dict, str]]:
    """(channel family, topic kind, value, channel) for every data message a record carries."""
    p = record.payload
    if record.kind == "rest" and record.url and "get_instruments" in record.url and isinstance(p, dict):
        return [("instruments", "deribit.instruments", obj, record.url) for obj in p.get("result") or []]
    if record.kind != "received" or not isinstance(p, dict) or p.get("method") != "subscription":
        return []
    channel = p["params"]["channel"]
    family = channel.split(".", 1)[0]
    kind = CHANNEL_TOPICS.get(family)
    if kind is None:
        return []
    data = p["params"]["data"]
    items = data if isinstance(data, list) else [data]
    return [(family, kind, item, channel) for item in items]


def replay(path: Path, sink: Sink, settings: KafkaSettings | None = None, speed: float = 0.0) -> ReplayStats:
    """Produce every data message of the capture; `speed` X > 0 paces at X times the captured pace."""
    stats = ReplayStats()
    t_first: float | None = None
    wall0 = time.monotonic()
    for record in read_capture(path):
        msgs = data_messages(record)
        if not msgs:
            continue
        if speed > 0:
            t_first = record.local_ts if t_first is None else t_first
            wait = (record.local_ts - t_first) / speed - (time.monotonic() - wall0)
            if wait > 0:
                time.sleep(wait)
        for family, kind, value, channel in msgs:
            spec = settings.topic(kind) if settings is not None else None
            topic = spec.name if spec else kind
            key_field = (
                spec.key_field if spec else ("index_name" if kind == "deribit.index" else "instrument_name")
            )
            headers = [
                ("source", b"replay"),
                ("channel", channel.encode()),
                ("received_at", str(record.local_us).encode()),
            ]
            sink.send(topic, str(value.get(key_field, "")).encode(), _dumps(value), headers)
            stats.per_channel[family] += 1
            stats.per_topic[kind] += 1
    sink.close()
    return stats
