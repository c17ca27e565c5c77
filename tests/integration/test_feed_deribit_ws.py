"""The live bridge against a local websocket server that serves the real capture: it drops the connection
once (reconnect, resubscribe) and, in another run, loses a book change (re-snapshot on the gap)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from pathlib import Path

from derivlake.config import KafkaSettings
from derivlake.feed.capture import read_capture
from derivlake.feed.deribit_ws import BridgeConfig, DeribitBridge
from derivlake.feed.producer import KafkaSink
from tests.conftest import free_port
from tests.integration.test_feed_kafka import consume_all


class FakeDeribit:
    """Serves the capture's subscription messages; the first connection is dropped halfway."""

    def __init__(self, fixtures_dir: Path) -> None:
        self.data = [
            r.payload
            for r in read_capture(fixtures_dir / "deribit-ws-2021-07-22.capture")
            if r.kind == "received" and r.payload.get("method") == "subscription"
        ]
        self.rest = {}
        for r in read_capture(fixtures_dir / "deribit-rest-instruments.capture"):
            if r.kind == "rest":
                self.rest[r.url.split("currency=")[1].split("&")[0]] = r.payload["result"]
        self.cursor = 0
        self.connections = 0
        self.subscribes = 0
        self.tests = 0

    async def handler(self, ws) -> None:
        self.connections += 1
        stop_at = len(self.data) // 2 if self.connections == 1 else len(self.data)
        async for raw in ws:
            req = json.loads(raw)
            method, rid = req["method"], req.get("id")
            if method == "public/set_heartbeat":
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "result": "ok"}))
                await ws.send(
                    json.dumps({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}})
                )
            elif method == "public/get_instruments":
                result = self.rest.get(req["params"]["currency"], [])
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}))
            elif method == "public/test":
                self.tests += 1
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"version": "fake"}}))
            elif method == "public/subscribe":
                self.subscribes += 1
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "result": req["params"]["channels"]}))
                while self.cursor < stop_at:
                    await ws.send(json.dumps(self.data[self.cursor]))
                    self.cursor += 1
                if self.connections == 1:
                    await ws.close()  # the network blip: the bridge must reconnect and resubscribe
                    return


def instrument_names(fake: FakeDeribit | GapDeribit) -> tuple[str, ...]:
    return tuple(sorted({m["params"]["data"]["instrument_name"] for m in fake.data}))


def run_bridge(fake: FakeDeribit | GapDeribit | LiveDeribit, kafka: KafkaSettings, **config: object):
    """Run the bridge against `fake` served on a free local port, into the real broker."""
    from websockets.asyncio.server import serve

    port = free_port()
    sink = KafkaSink(kafka)

    async def main():
        async with serve(fake.handler, "127.0.0.1", port):
            cfg = BridgeConfig(
                **{"url": f"ws://127.0.0.1:{port}", "instruments": instrument_names(fake), "interval": "raw",
                   "duration_s": 30, **config},
            )  # fmt: skip
            return await DeribitBridge(cfg, sink, kafka).run()

    try:
        return asyncio.run(main())
    finally:
        sink.close()


def test_bridge_reconnects_resubscribes_and_lands_every_message(
    kafka: KafkaSettings, fixtures_dir: Path
) -> None:
    fake = FakeDeribit(fixtures_dir)
    names = instrument_names(fake)
    stats = run_bridge(
        fake, kafka, currencies=("BTC", "ETH"), max_messages=len(fake.data), backoff_initial_s=0.1
    )
    assert stats.reconnects == 1 and fake.connections == 2 and fake.subscribes == 2
    assert stats.test_requests >= 1 and fake.tests >= 1
    expected_ticker = [
        json.dumps(m["params"]["data"], separators=(",", ":")).encode()
        for m in fake.data
        if m["params"]["channel"].startswith("ticker.")
    ]
    expected_book = [
        json.dumps(m["params"]["data"], separators=(",", ":")).encode()
        for m in fake.data
        if m["params"]["channel"].startswith("book.")
    ]
    got_ticker = [m.value() for m in consume_all(kafka, "deribit.ticker")]
    got_book = [m.value() for m in consume_all(kafka, "deribit.book")]
    assert sorted(got_ticker) == sorted(expected_ticker)
    assert sorted(got_book) == sorted(expected_book)
    instruments = consume_all(kafka, "deribit.instruments")
    assert {m.key().decode() for m in instruments} <= set(names) and instruments
    assert all(dict(m.headers())["source"] == b"deribit" for m in consume_all(kafka, "deribit.ticker"))


GAPPED = "BTC-24SEP21-8000-P"  # the capture's busiest book: a snapshot and 30 changes
GAPPED_BOOK = f"book.{GAPPED}.raw"


def apply_book(book: dict[str, dict[float, float]], data: dict) -> None:
    """Deribit's book semantics: a snapshot starts afresh; `new`/`change` set a level, `delete` drops it."""
    if data["type"] == "snapshot":
        book["bids"], book["asks"] = {}, {}
    for side in ("bids", "asks"):
        for action, price, amount in data[side]:
            if action == "delete":
                book[side].pop(price, None)
            else:
                book[side][price] = amount


class GapDeribit:
    """Serves the capture once, but one change of GAPPED's book is lost on the way: the venue applied it
    (a new bid level that no later change touches) and the next change follows on from it, so the bridge
    sees `prev_change_id` != the last `change_id` it got. The stream pauses there until the bridge has
    resubscribed that book, which Deribit answers with a snapshot of the book as the venue has it."""

    def __init__(self, fixtures_dir: Path) -> None:
        base = FakeDeribit(fixtures_dir)
        self.data, self.rest = base.data, base.rest
        book_at = [i for i, m in enumerate(self.data) if m["params"]["channel"] == GAPPED_BOOK]
        self.reveal = book_at[10]  # the change right after the lost one
        self.venue: dict[str, dict[float, float]] = {"bids": {}, "asks": {}}  # what the exchange has
        self.venue_change_id = 0
        self.sent: list[dict] = []  # data messages, in the order sent
        self.requests: list[tuple[str, list[str]]] = []
        self.resubscribed = asyncio.Event()
        self.stream: asyncio.Task | None = None
        self.lock = asyncio.Lock()

    async def send(self, ws, msg: dict) -> None:
        async with self.lock:
            await ws.send(json.dumps(msg))
        if msg.get("method") == "subscription":
            self.sent.append(msg)

    def snapshot(self, timestamp: int) -> dict:
        data = {
            "type": "snapshot",
            "timestamp": timestamp,
            "instrument_name": GAPPED,
            "change_id": self.venue_change_id,
            "bids": [["new", p, a] for p, a in sorted(self.venue["bids"].items(), reverse=True)],
            "asks": [["new", p, a] for p, a in sorted(self.venue["asks"].items())],
        }
        return {"jsonrpc": "2.0", "method": "subscription", "params": {"channel": GAPPED_BOOK, "data": data}}

    async def run_stream(self, ws) -> None:
        for i, msg in enumerate(self.data):
            data = msg["params"]["data"]
            if i == self.reveal:
                lost = {
                    "type": "change",
                    "timestamp": data["timestamp"],
                    "prev_change_id": data["prev_change_id"],
                    "instrument_name": GAPPED,
                    "change_id": data["prev_change_id"] + 1,
                    "bids": [["new", 0.0001, 5.0]],
                    "asks": [],
                }
                apply_book(self.venue, lost)  # never sent
                data = {**data, "prev_change_id": lost["change_id"]}
                msg = {**msg, "params": {**msg["params"], "data": data}}
            if msg["params"]["channel"] == GAPPED_BOOK:
                apply_book(self.venue, data)
                self.venue_change_id = data["change_id"]
            await self.send(ws, msg)
            if i == self.reveal:
                await asyncio.wait_for(self.resubscribed.wait(), timeout=20)

    async def handler(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):  # the bridge hangs up once it has what it wanted
            await self.serve(ws)
        if self.stream is not None:
            await self.stream

    async def serve(self, ws) -> None:
        async for raw in ws:
            req = json.loads(raw)
            method, rid, params = req["method"], req.get("id"), req.get("params") or {}
            if method == "public/set_heartbeat":
                await self.send(ws, {"jsonrpc": "2.0", "id": rid, "result": "ok"})
            elif method == "public/get_instruments":
                await self.send(
                    ws, {"jsonrpc": "2.0", "id": rid, "result": self.rest.get(params["currency"], [])}
                )
            elif method in ("public/subscribe", "public/unsubscribe"):
                self.requests.append((method, params["channels"]))
                await self.send(ws, {"jsonrpc": "2.0", "id": rid, "result": params["channels"]})
                if method == "public/unsubscribe":
                    continue
                if self.stream is None:
                    self.stream = asyncio.create_task(self.run_stream(ws))
                elif params["channels"] == [GAPPED_BOOK]:  # a (re)subscription starts with a snapshot
                    await self.send(ws, self.snapshot(self.sent[-1]["params"]["data"]["timestamp"]))
                    self.resubscribed.set()


def test_bridge_resnapshots_a_book_after_a_change_id_gap(kafka: KafkaSettings, fixtures_dir: Path) -> None:
    fake = GapDeribit(fixtures_dir)
    # the capture, less the lost change, plus the snapshot
    stats = run_bridge(fake, kafka, max_messages=len(fake.data) + 1, max_reconnects=0)

    # the bridge asked for that one book again, once, and got its snapshot
    assert fake.requests[1:] == [("public/unsubscribe", [GAPPED_BOOK]), ("public/subscribe", [GAPPED_BOOK])]
    assert stats.gap_resubscribes == 1 and stats.reconnects == 0
    assert len(fake.sent) == len(fake.data) + 1

    def wire(msgs: list[dict]) -> list[bytes]:
        return [json.dumps(m["params"]["data"], separators=(",", ":")).encode() for m in msgs]

    sent_book = [m for m in fake.sent if m["params"]["channel"].startswith("book.")]
    sent_ticker = [m for m in fake.sent if m["params"]["channel"].startswith("ticker.")]
    got_book = consume_all(kafka, "deribit.book")
    assert sorted(m.value() for m in got_book) == sorted(wire(sent_book))
    assert sorted(m.value() for m in consume_all(kafka, "deribit.ticker")) == sorted(wire(sent_ticker))
    # GAPPED's book in Kafka, in order: every change as received (the one after the gap too), then the
    # fresh snapshot right after it, then the changes that follow on from that snapshot
    gapped = [m for m in got_book if m.key() == GAPPED.encode()]
    assert [m.value() for m in gapped] == wire(
        [m for m in sent_book if m["params"]["channel"] == GAPPED_BOOK]
    )
    kinds = [json.loads(m.value())["type"] for m in gapped]
    assert kinds.count("snapshot") == 2 and kinds[0] == "snapshot" and kinds.index("snapshot", 1) == 11

    # a consumer of the topic that honours change ids ends with the venue's book, lost bid level included;
    # the changes alone (without the re-snapshot) would have missed it
    careful: dict[str, dict[float, float]] = {"bids": {}, "asks": {}}
    changes_only: dict[str, dict[float, float]] = {"bids": {}, "asks": {}}
    last: int | None = None
    for k, m in enumerate(gapped):
        data = json.loads(m.value())
        if k == 0 or data["type"] == "change":
            apply_book(changes_only, data)
        if data["type"] == "change" and data["prev_change_id"] != last:
            last = None  # unusable until the next snapshot
            continue
        if data["type"] == "snapshot" or last is not None:
            apply_book(careful, data)
            last = data["change_id"]
    assert last == fake.venue_change_id
    assert careful == fake.venue and careful["bids"][0.0001] == 5.0
    assert 0.0001 not in changes_only["bids"] and changes_only["asks"] == fake.venue["asks"]


class LiveDeribit:
    """A venue that honours subscriptions. It streams the capture's notifications of the channels
    subscribed on this connection and, as the capture has no index notifications, one
    `deribit_price_index.<base>_usd` notification per ticker frame in Deribit's documented shape
    (`index_name`, `price`, `timestamp`) from that frame's own `index_price` and `timestamp`.
    `get_instruments` serves `listings[currency][k]` at the k-th fetch (the last one repeats): a test
    expires and lists series between fetches. `repeat` streams the capture again and again."""

    def __init__(
        self,
        fixtures_dir: Path,
        listings: dict[str, list[list[dict]]] | None = None,
        repeat: bool = False,
        drop_after_subscribes: int | None = None,
    ) -> None:
        base = FakeDeribit(fixtures_dir)
        self.data, self.rest = base.data, base.rest
        self.listings = listings or {cur: [res] for cur, res in self.rest.items()}
        self.repeat = repeat
        self.drop_after_subscribes = drop_after_subscribes  # close the first connection after that many
        self.fetches: Counter[str] = Counter()
        self.requests: list[tuple[int, str, object]] = []  # (connection, method, channels or currency)
        self.sent: list[dict] = []  # notifications, in the order sent
        self.connections = 0

    @staticmethod
    def index_of(msg: dict) -> dict | None:
        if not msg["params"]["channel"].startswith("ticker."):
            return None
        data = msg["params"]["data"]
        name = data["instrument_name"].split("-")[0].lower() + "_usd"
        index = {"timestamp": data["timestamp"], "price": data["index_price"], "index_name": name}
        return {"jsonrpc": "2.0", "method": "subscription",
                "params": {"channel": f"deribit_price_index.{name}", "data": index}}  # fmt: skip

    async def handler(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        self.connections += 1
        conn = self.connections
        subscribed: set[str] = set()
        lock = asyncio.Lock()
        stream: asyncio.Task | None = None
        subscribes = 0

        async def send(msg: dict) -> None:
            async with lock:
                await ws.send(json.dumps(msg))
            if msg.get("method") == "subscription":
                self.sent.append(msg)

        async def run_stream() -> None:
            while True:
                for msg in self.data:
                    for m in (msg, self.index_of(msg)):
                        if m is not None and m["params"]["channel"] in subscribed:
                            await send(m)
                    await asyncio.sleep(0.001)
                if not self.repeat:
                    return
                await asyncio.sleep(0.05)

        try:
            async for raw in ws:
                req = json.loads(raw)
                method, rid, params = req["method"], req.get("id"), req.get("params") or {}
                if method == "public/get_instruments":
                    cur = params["currency"]
                    self.requests.append((conn, method, cur))
                    steps = self.listings.get(cur, [[]])
                    result = steps[min(self.fetches[cur], len(steps) - 1)]
                    self.fetches[cur] += 1
                    await send({"jsonrpc": "2.0", "id": rid, "result": result})
                elif method in ("public/subscribe", "public/unsubscribe"):
                    self.requests.append((conn, method, params["channels"]))
                    if method == "public/subscribe":
                        subscribed.update(params["channels"])
                        subscribes += 1
                    else:
                        subscribed.difference_update(params["channels"])
                    await send({"jsonrpc": "2.0", "id": rid, "result": params["channels"]})
                    if stream is None:
                        stream = asyncio.create_task(run_stream())
                    if conn == 1 and subscribes == self.drop_after_subscribes:
                        await ws.close()  # a network blip: the bridge reconnects
                        return
                else:  # set_heartbeat, test
                    await send({"jsonrpc": "2.0", "id": rid, "result": "ok"})
        except ConnectionClosed:
            pass
        finally:
            if stream is not None:
                stream.cancel()


def test_bridge_subscribes_the_index_channels_and_lands_them_in_deribit_index(
    kafka: KafkaSettings, fixtures_dir: Path
) -> None:
    """The chain's completeness gate waits for `deribit.index` and the delivery price is its TWAP: the
    bridge follows the index of every instrument it follows, inverse (`btc_usd`) and USDC-linear
    (`sol_usdc`, from the spec's `price_index`), and produces it as the index normalizer reads it."""
    import re

    from derivlake.normalize.index import SPEC

    fake = LiveDeribit(fixtures_dir)
    names = (*instrument_names(fake), "SOL_USDC-PERPETUAL")
    n_index = sum(1 for m in fake.data if m["params"]["channel"].startswith("ticker."))
    stats = run_bridge(
        fake, kafka, currencies=("BTC", "ETH", "USDC"), instruments=names,
        max_messages=len(fake.data) + n_index, max_reconnects=0,
    )  # fmt: skip

    subscribed = {c for _, method, chans in fake.requests if method == "public/subscribe" for c in chans}
    assert {c for c in subscribed if c.startswith("deribit_price_index.")} == {
        "deribit_price_index.btc_usd",
        "deribit_price_index.eth_usd",
        "deribit_price_index.sol_usdc",
    }
    sent = [
        m["params"]["data"] for m in fake.sent if m["params"]["channel"].startswith("deribit_price_index.")
    ]
    assert len(sent) == n_index > 0 and stats.per_channel["deribit_price_index"] == n_index
    got = consume_all(kafka, "deribit.index")
    assert sorted(m.value() for m in got) == sorted(
        json.dumps(d, separators=(",", ":")).encode() for d in sent
    )
    for m in got:
        value = json.loads(m.value())
        assert set(SPEC.required) <= value.keys() and re.match(SPEC.symbol_pattern, value["index_name"])
        assert m.key() == value["index_name"].encode()
        assert dict(m.headers())["channel"] == f"deribit_price_index.{value['index_name']}".encode()


def test_bridge_fetches_instruments_again_after_expiry_and_on_reconnect(
    kafka: KafkaSettings, fixtures_dir: Path
) -> None:
    """A long-running bridge must drop series that expired at 08:00 and follow new listings: the list is
    fetched again on a schedule (here every 0.3 s) and on every reconnect, the expired series
    unsubscribed, the new ones subscribed, and only new or changed specs produced again."""
    a, b, c, d = (dict(x) for x in LiveDeribit(fixtures_dir).rest["BTC"][:4])
    listed = {**a, "instrument_name": "BTC-1JAN30-50000-C", "expiration_timestamp": 1893484800000}
    listings = {
        "BTC": [
            [a, b, c, d],  # the first connection's fetch (the bridge follows the first 3)
            [listed, b, c, d],  # the scheduled fetch: `a` expired, `listed` is new
            [listed, c, d],  # on reconnect: `b` expired while the bridge was away
        ]
    }
    fake = LiveDeribit(fixtures_dir, listings=listings, drop_after_subscribes=2)
    stats = run_bridge(
        fake, kafka, currencies=("BTC",), instruments=None, instrument_limit=3, refresh_s=0.3,
        duration_s=3, backoff_initial_s=0.1,
    )  # fmt: skip

    def chans(*specs: dict) -> list[str]:
        return [f"{fam}.{s['instrument_name']}.raw" for fam in ("ticker", "book", "trades") for s in specs]

    first = [r for r in fake.requests if r[0] == 1]
    assert first == [
        (1, "public/get_instruments", "BTC"),
        (1, "public/subscribe", [*chans(a, b, c), "deribit_price_index.btc_usd"]),
        (1, "public/get_instruments", "BTC"),
        (1, "public/unsubscribe", sorted(chans(a))),
        (1, "public/subscribe", chans(listed)),
    ]
    second = [r for r in fake.requests if r[0] == 2]
    assert second[:2] == [
        (2, "public/get_instruments", "BTC"),
        (2, "public/subscribe", [*chans(listed, c, d), "deribit_price_index.btc_usd"]),
    ]
    # later fetches of the same listing change nothing
    assert {r[1] for r in second[2:]} == {"public/get_instruments"} and len(second) > 2
    assert stats.reconnects == 1 and stats.listed == 1 and stats.delisted == 1
    produced = [json.loads(m.value())["instrument_name"] for m in consume_all(kafka, "deribit.instruments")]
    names = [s["instrument_name"] for s in (a, b, c, listed, d)]
    assert produced == names


def test_next_refresh_is_hourly_and_just_after_each_0800_expiry() -> None:
    from datetime import UTC, datetime

    from derivlake.feed.deribit_ws import next_refresh

    def at(h: int, m: int, s: int = 0, day: int = 26) -> float:
        return datetime(2024, 12, day, h, m, s, tzinfo=UTC).timestamp()

    assert next_refresh(at(7, 59), 3600, 60) == at(8, 1)
    assert next_refresh(at(7, 30), 3600, 60) == at(8, 1)
    assert next_refresh(at(8, 0, 30), 3600, 60) == at(8, 1)  # the listing may not be out yet at 08:00
    assert next_refresh(at(8, 1), 3600, 60) == at(9, 1)
    assert next_refresh(at(12, 0), 3600, 60) == at(13, 0)
    assert next_refresh(at(23, 30), 86400, 60) == at(8, 1, day=27)
