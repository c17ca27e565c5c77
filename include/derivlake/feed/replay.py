"""Replay a Deribit capture into the topics, as the exchange sent it.

Each `ticker.*` / `book.*` / `deribit_price_index.*` notification's `data` becomes one message, each trade
of a `trades.*` notification one message (Deribit batches trades), each object of a REST `get_instruments`
result one `deribit.instruments` message; `received_at` is the capture's local receive time. (The shared
2021 capture has no index notifications; a capture that has them replays them into `deribit.index`.)
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from derivlake.config import KafkaSettings
from derivlake.feed.capture import CaptureRecord, capture_files, parse_line, read_capture
from derivlake.feed.deribit_ws import CHANNEL_TOPICS  # a capture holds what the live bridge receives
from derivlake.feed.producer import DeliveryFailed, Sink
from derivlake.feed.stop import StopRequest

log = logging.getLogger(__name__)


@dataclass
class ReplayStats:
    # channel family ("ticker", "book", "trades", "deribit_price_index") or "instruments" -> messages
    per_channel: Counter[str] = field(default_factory=Counter)
    per_topic: Counter[str] = field(default_factory=Counter)  # topic kind -> messages

    @property
    def total(self) -> int:
        return sum(self.per_topic.values())


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class NotACapture(ValueError):
    """The path given to replay holds no capture: the message names it and the expected format."""


CAPTURE_FORMAT = (
    "the fixtures/deribit-ws line format: `<ts>: <json>` received, `<url> -> <ts>: <json>` a REST reply, "
    "`<url> <-> <ts>` a session opened"
)


def check_capture(path: Path) -> None:
    """Raise NotACapture for a folder without `*.capture` files, or a file with lines none of which is a
    capture line: a replay of either said `replayed 0 messages` and succeeded. An empty file is an empty
    capture. Reads each file up to its first capture line."""
    files = capture_files(path)
    if path.is_dir() and not files:
        raise NotACapture(
            f"{path} holds no *.capture files: give a capture file, or a folder of them, in {CAPTURE_FORMAT}"
        )
    for file in files:
        with open(file, encoding="utf-8", errors="replace") as fh:
            lines = 0
            for line in fh:
                if not line.strip():
                    continue
                lines += 1
                try:
                    if parse_line(line) is not None:
                        break
                except ValueError:  # a capture-like prefix and no JSON: not a capture line either
                    pass
            else:
                if lines:
                    raise NotACapture(
                        f"{file}: none of its {lines} lines is a capture line; expected {CAPTURE_FORMAT}"
                    )


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


def replay(
    path: Path,
    sink: Sink,
    settings: KafkaSettings | None = None,
    speed: float = 0.0,
    stop: StopRequest | None = None,
) -> ReplayStats:
    """Produce every data message of the capture; `speed` X > 0 paces at X times the captured pace.

    Ends early when `stop` is set (after the record in hand) or at the first failed delivery; either
    way the sink is flushed, and `DeliveryFailed` raised with the final count if anything was lost."""
    stats = ReplayStats()
    try:
        _replay(path, sink, settings, speed, stop, stats)
    except DeliveryFailed as exc:
        log.error("%s: flushing what is queued", exc)  # close() raises the final count
    sink.close()
    return stats


def _replay(
    path: Path,
    sink: Sink,
    settings: KafkaSettings | None,
    speed: float,
    stop: StopRequest | None,
    stats: ReplayStats,
) -> None:
    t_first: float | None = None
    wall0 = time.monotonic()
    for record in read_capture(path):
        if stop:
            log.info("stop requested (%s): flushing", stop.reason)
            return
        msgs = data_messages(record)
        if not msgs:
            continue
        if speed > 0:
            t_first = record.local_ts if t_first is None else t_first
            wait = (record.local_ts - t_first) / speed - (time.monotonic() - wall0)
            if wait > 0:
                if stop is None:
                    time.sleep(wait)
                elif not stop.sleep(wait):
                    log.info("stop requested (%s): flushing", stop.reason)
                    return
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
