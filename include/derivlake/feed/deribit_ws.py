"""Live bridge from Deribit's public websocket JSON-RPC API into the topics.

Why each piece: `public/set_heartbeat` + answering `test_request` keeps Deribit from dropping us;
reconnecting with exponential backoff and resubscribing survives network blips; and a book gap
(`prev_change_id` != last `change_id`) is repaired by unsubscribing and resubscribing that one channel,
which makes Deribit send a fresh snapshot. The index channels (`deribit_price_index.<index>`) of the
followed instruments feed `deribit.index`: the delivery price is the index TWAP and the chain's
completeness gate waits for that topic. The instrument list is fetched again on every (re)connect, hourly
and just after each 08:00 UTC expiry, so a long-running bridge drops expired series and follows new
listings. Values go to Kafka exactly as received.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field

from derivlake.config import KafkaSettings
from derivlake.feed.producer import Sink
from derivlake.feed.stop import StopRequest

log = logging.getLogger(__name__)

CHANNEL_TOPICS = {
    "ticker": "deribit.ticker",
    "book": "deribit.book",
    "trades": "deribit.trades",
    "deribit_price_index": "deribit.index",
}
INSTRUMENT_FAMILIES = ("ticker", "book", "trades")
DAY_S = 86_400
EXPIRY_S = 8 * 3600  # every Deribit expiry is at 08:00 UTC


def index_name(instrument: dict) -> str | None:
    """The index an instrument settles on: its `price_index` (`btc_usd`, `sol_usdc`), or for specs
    without one (older inverse listings) `<base>_usd`."""
    name = instrument.get("price_index")
    if name:
        return str(name)
    base = instrument.get("base_currency")
    return f"{str(base).lower()}_usd" if base else None


def next_refresh(now_s: float, every_s: float, after_expiry_s: float) -> float:
    """When to fetch the instruments next: within `every_s`, and `after_expiry_s` past the next 08:00 UTC
    expiry at the latest (expired series leave and the new ones are listed then)."""
    expiry = math.floor((now_s - EXPIRY_S) / DAY_S) * DAY_S + EXPIRY_S + DAY_S  # next 08:00 after now
    if expiry - DAY_S + after_expiry_s > now_s:  # still just after today's 08:00
        expiry -= DAY_S
    return min(now_s + every_s, expiry + after_expiry_s)


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
    refresh_s: float = 3600.0  # instrument list fetched again at least this often (and on reconnect)
    refresh_after_expiry_s: float = 60.0  # ... and this long after each 08:00 UTC expiry


@dataclass
class BridgeStats:
    produced: int = 0
    per_channel: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    gap_resubscribes: int = 0
    test_requests: int = 0
    refreshes: int = 0  # instrument list fetches after the first
    listed: int = 0  # instruments subscribed by a refresh (new listings)
    delisted: int = 0  # instruments unsubscribed by a refresh (expired)


class _Stop(Exception):
    pass


class RpcError(RuntimeError):
    """Deribit answered a request with an error."""


REFRESH_RETRY_S = 60.0  # a refresh Deribit refused is tried again this much later


class DeribitBridge:
    def __init__(
        self,
        config: BridgeConfig,
        sink: Sink,
        settings: KafkaSettings | None = None,
        stop: StopRequest | None = None,
    ) -> None:
        self.config = config
        self.sink = sink
        self.settings = settings
        self.stop = stop
        self.stats = BridgeStats()
        self.instruments: list[dict] = []
        self._specs: dict[str, dict] = {}  # last spec produced per instrument: only changes go out again
        self._next_id = 0
        self._last_change: dict[str, int | None] = {}  # None: waiting for a snapshot after a gap
        self._deadline: float | None = None
        self._next_refresh = math.inf  # wall clock (the 08:00 UTC expiry is wall-clock time)

    def _topic(self, kind: str) -> str:
        return self.settings.topic(kind).name if self.settings is not None else kind

    def _key_field(self, kind: str) -> str:
        if self.settings is not None:
            return self.settings.topic(kind).key_field
        return "index_name" if kind == "deribit.index" else "instrument_name"

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
                    raise RpcError(f"{method} failed: {msg['error']}")
                return msg.get("result")
            await self._handle(ws, msg)

    def channels(self) -> list[str]:
        """Instrument channels of the followed instruments, then the index channels they settle on."""
        names = [i["instrument_name"] for i in self.instruments]
        iv = self.config.interval
        indexes = sorted({n for n in map(index_name, self.instruments) if n})
        return [f"{fam}.{n}.{iv}" for fam in INSTRUMENT_FAMILIES for n in names] + [
            f"deribit_price_index.{i}" for i in indexes
        ]

    async def _subscription(self, ws: object, method: str, channels: list[str]) -> None:
        for i in range(0, len(channels), 100):
            await self._call(ws, method, {"channels": channels[i : i + 100]})

    async def _refresh(self, ws: object) -> None:
        """Fetch the instrument list again; unsubscribe the series gone (expired), subscribe the new."""
        before = {i["instrument_name"] for i in self.instruments}
        old = set(self.channels())
        await self._fetch_instruments(ws)
        now = {i["instrument_name"] for i in self.instruments}
        new = self.channels()
        gone = sorted(old - set(new))
        added = [c for c in new if c not in old]
        self.stats.refreshes += 1
        self.stats.listed += len(now - before)
        self.stats.delisted += len(before - now)
        if gone:
            await self._subscription(ws, "public/unsubscribe", gone)
        if added:
            await self._subscription(ws, "public/subscribe", added)
        for name in before - now:
            self._last_change.pop(name, None)
        if gone or added:
            log.info(
                "instruments refreshed: %d listed (%s), %d gone (%s)",
                len(now - before),
                ", ".join(sorted(now - before)[:5]),
                len(before - now),
                ", ".join(sorted(before - now)[:5]),
            )

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
        cfg = self.config
        self._next_refresh = next_refresh(time.time(), cfg.refresh_s, cfg.refresh_after_expiry_s)
        now_us = time.time_ns() // 1000
        for obj in selected:
            if self._specs.get(obj["instrument_name"]) == obj:
                continue  # unchanged since the last fetch
            self._specs[obj["instrument_name"]] = obj
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
        key_field = self._key_field(kind)
        for item in data if isinstance(data, list) else [data]:
            self._produce(kind, str(item.get(key_field, "")), item, channel, received_us)
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
        # every (re)connect: the list may have changed while we were away (an 08:00 expiry)
        await self._fetch_instruments(ws)
        await self._subscription(ws, "public/subscribe", self.channels())
        silent_s = self.config.heartbeat_s * 3
        last = time.monotonic()
        while True:
            now = time.monotonic()
            if self.stop or (self._deadline is not None and now >= self._deadline):
                raise _Stop  # the stop also cancels the task; this catches a cancel wait_for swallowed
            if time.time() >= self._next_refresh:
                try:
                    await self._refresh(ws)
                except RpcError as exc:  # keep bridging what we follow; a reconnect also fetches again
                    log.warning("instrument refresh failed (%s); retrying in %.0fs", exc, REFRESH_RETRY_S)
                    self._next_refresh = time.time() + REFRESH_RETRY_S
                last = time.monotonic()
                continue
            if now - last >= silent_s:
                raise ConnectionError("no message within 3 heartbeats")
            wake = min(
                last + silent_s,
                self._deadline if self._deadline is not None else math.inf,
                now + self._next_refresh - time.time(),
            )
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=max(0.0, wake - now))  # type: ignore[attr-defined]
            except TimeoutError:
                continue  # the loop's checks say which deadline passed
            last = time.monotonic()
            await self._handle(ws, json.loads(raw))

    async def run(self) -> BridgeStats:
        """Bridge until max_messages / duration / max_reconnects; reconnects with exponential backoff."""
        if self.config.duration_s is not None:
            self._deadline = time.monotonic() + self.config.duration_s
        task, loop = asyncio.current_task(), asyncio.get_running_loop()
        assert task is not None
        unregister = None
        if self.stop is not None:  # a SIGTERM cancels whatever the bridge awaits (sends are synchronous)
            unregister = self.stop.on_stop(lambda: loop.call_soon_threadsafe(task.cancel))
        try:
            await self._reconnecting()
        except asyncio.CancelledError:
            if not self.stop:
                raise
            task.uncancel()
            log.info("stop requested (%s): flushing", self.stop.reason)
        finally:
            if unregister is not None:
                unregister()
        return self.stats

    async def _reconnecting(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        cfg = self.config
        backoff = cfg.backoff_initial_s
        while not self.stop:
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


def run_bridge(
    config: BridgeConfig,
    sink: Sink,
    settings: KafkaSettings | None = None,
    stop: StopRequest | None = None,
) -> BridgeStats:
    """Blocking entry point of the CLI; the sink is flushed whatever ends the run, and `DeliveryFailed`
    (at the first failed delivery, then with the final count from `close()`) propagates."""
    bridge = DeribitBridge(config, sink, settings, stop)
    try:
        return asyncio.run(bridge.run())
    finally:
        sink.close()
