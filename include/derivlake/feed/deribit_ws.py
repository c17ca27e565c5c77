"""Live bridge from Deribit's public websocket JSON-RPC API into the topics.

Why each piece: `public/set_heartbeat` + answering `test_request` keeps Deribit from dropping us;
reconnecting with exponential backoff and resubscribing survives network blips; and a book gap
(`prev_change_id` != last `change_id`) is repaired by unsubscribing and resubscribing that one channel,
which makes Deribit send a fresh snapshot. Values go to Kafka exactly as received.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from derivlake.config import KafkaSettings
from derivlake.feed.producer import Sink

log = logging.getLogger(__name__)

CHANNEL_TOPICS = {"ticker": "deribit.ticker", "book": "deribit.book", "trades": "deribit.trades"}


@dataclass(frozen=True)
class BridgeConfig:
    url: str = "wss://www.deribit.com/ws/api/v2"
    currencies: tuple[str, ...] = ("BTC", "ETH")
    instrument_limit: int = 20  # per currency, first ones of get_instruments
    instruments: tuple[str, ...] | None = None  # explicit names instead of the first N per currency
    interval: str = "100ms"  # `raw` needs an authenticated connection on the real venue
    heartbeat_s: int = 10
    max_messages: int | None = None  # stop after this many data messages (tests)
    duration_s: float | None = None
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_reconnects: int | None = None


@dataclass
class BridgeStats:
    produced: int = 0
    per_channel: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    gap_resubscribes: int = 0
    test_requests: int = 0


class _Stop(Exception):
    pass


class DeribitBridge:
    def __init__(self, config: BridgeConfig, sink: Sink, settings: KafkaSettings | None = None) -> None:
        self.config = config
        self.sink = sink
        self.settings = settings
        self.stats = BridgeStats()
        self.instruments: list[dict] = []
        self._next_id = 0
        self._last_change: dict[str, int | None] = {}  # None: waiting for a snapshot after a gap
        self._deadline: float | None = None

    def _topic(self, kind: str) -> str:
        return self.settings.topic(kind).name if self.settings is not None else kind

    def _produce(self, kind: str, key: str, value: dict, channel: str, received_us: int) -> None:
        headers = [
            ("source", b"deribit"),
            ("channel", channel.encode()),
            ("received_at", b"%d" % received_us),
        ]
        self.sink.send(
            self._topic(kind), key.encode(), json.dumps(value, separators=(",", ":")).encode(), headers
        )
        self.stats.produced += 1

    async def _send(self, ws: object, method: str, params: dict) -> int:
        self._next_id += 1
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}))  # type: ignore[attr-defined]
        return self._next_id

    async def _call(self, ws: object, method: str, params: dict) -> object:
        """Request and wait for its response (only used before subscribing)."""
        rid = await self._send(ws, method, params)
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))  # type: ignore[attr-defined]
            if msg.get("id") == rid:
                if "error" in msg:
                    raise RuntimeError(f"{method} failed: {msg['error']}")
                return msg.get("result")
            await self._handle(ws, msg)

    def channels(self) -> list[str]:
        names = [i["instrument_name"] for i in self.instruments]
        iv = self.config.interval
        return [f"{fam}.{n}.{iv}" for fam in ("ticker", "book", "trades") for n in names]

    async def _fetch_instruments(self, ws: object) -> None:
        wanted = set(self.config.instruments or ())
        selected: list[dict] = []
        for currency in self.config.currencies:
            result = await self._call(ws, "public/get_instruments", {"currency": currency, "expired": False})
            items = list(result or [])  # type: ignore[arg-type]
            if wanted:
                selected += [i for i in items if i.get("instrument_name") in wanted]
            else:
                selected += items[: self.config.instrument_limit]
        self.instruments = selected
        now_us = time.time_ns() // 1000
        for obj in selected:
            self._produce(
                "deribit.instruments", obj["instrument_name"], obj, "public/get_instruments", now_us
            )
            self.stats.per_channel["instruments"] += 1

    async def _handle(self, ws: object, msg: dict) -> None:
        method = msg.get("method")
        if method == "heartbeat":
            if (msg.get("params") or {}).get("type") == "test_request":
                self.stats.test_requests += 1
                await self._send(ws, "public/test", {})
            return
        if method != "subscription":
            return
        received_us = time.time_ns() // 1000
        channel = msg["params"]["channel"]
        family = channel.split(".", 1)[0]
        kind = CHANNEL_TOPICS.get(family)
        if kind is None:
            return
        data = msg["params"]["data"]
        for item in data if isinstance(data, list) else [data]:
            self._produce(kind, str(item.get("instrument_name", "")), item, channel, received_us)
            self.stats.per_channel[family] += 1
        if family == "book":
            await self._check_book(ws, data, channel)
        limit = self.config.max_messages
        if limit is not None and sum(self.stats.per_channel[f] for f in CHANNEL_TOPICS) >= limit:
            raise _Stop

    async def _check_book(self, ws: object, data: dict, channel: str) -> None:
        name = data.get("instrument_name", "")
        if data.get("type") == "snapshot":
            self._last_change[name] = data.get("change_id")
            return
        if name in self._last_change and self._last_change[name] is None:
            return  # resubscribed after a gap: wait for the snapshot
        last = self._last_change.get(name)
        if last is not None and data.get("prev_change_id") != last:
            log.warning(
                "book gap on %s (prev_change_id %s, last %s): resubscribing",
                name,
                data.get("prev_change_id"),
                last,
            )
            self.stats.gap_resubscribes += 1
            self._last_change[name] = None
            await self._send(ws, "public/unsubscribe", {"channels": [channel]})
            await self._send(ws, "public/subscribe", {"channels": [channel]})
            return
        self._last_change[name] = data.get("change_id")

    async def _session(self, ws: object) -> None:
        await self._call(ws, "public/set_heartbeat", {"interval": self.config.heartbeat_s})
        if not self.instruments:
            await self._fetch_instruments(ws)
        chans = self.channels()
        for i in range(0, len(chans), 100):
            await self._call(ws, "public/subscribe", {"channels": chans[i : i + 100]})
        while True:
            timeout = self.config.heartbeat_s * 3
            if self._deadline is not None:
                timeout = min(timeout, max(0.0, self._deadline - time.monotonic()))
                if timeout == 0:
                    raise _Stop
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=timeout)  # type: ignore[attr-defined]
            except TimeoutError:
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    raise _Stop from None
                raise ConnectionError("no message within 3 heartbeats") from None
            await self._handle(ws, json.loads(raw))

    async def run(self) -> BridgeStats:
        """Bridge until max_messages / duration / max_reconnects; reconnects with exponential backoff."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        cfg = self.config
        if cfg.duration_s is not None:
            self._deadline = time.monotonic() + cfg.duration_s
        backoff = cfg.backoff_initial_s
        while True:
            try:
                async with connect(cfg.url, max_size=2**24) as ws:
                    before = self.stats.produced
                    try:
                        await self._session(ws)
                    finally:
                        if self.stats.produced > before:
                            backoff = cfg.backoff_initial_s
            except _Stop:
                break
            except (WebSocketException, OSError, ConnectionError, TimeoutError) as exc:
                self.stats.reconnects += 1
                if cfg.max_reconnects is not None and self.stats.reconnects > cfg.max_reconnects:
                    raise
                log.warning("connection lost (%s); reconnecting in %.1fs", exc, backoff)
                if self._deadline is not None and time.monotonic() + backoff >= self._deadline:
                    break
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, cfg.backoff_max_s)
                # a new session starts from fresh snapshots
                self._last_change.clear()
        return self.stats


def run_bridge(config: BridgeConfig, sink: Sink, settings: KafkaSettings | None = None) -> BridgeStats:
    """Blocking entry point of the CLI; `DeliveryFailed` from the sink propagates."""
    bridge = DeribitBridge(config, sink, settings)
    try:
        return asyncio.run(bridge.run())
    finally:
        sink.close()
