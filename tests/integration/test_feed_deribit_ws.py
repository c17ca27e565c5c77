"""The live bridge against a local websocket server that serves the real capture and drops once."""

from __future__ import annotations

import asyncio
import json
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


def test_bridge_reconnects_resubscribes_and_lands_every_message(
    kafka: KafkaSettings, fixtures_dir: Path
) -> None:
    from websockets.asyncio.server import serve

    fake = FakeDeribit(fixtures_dir)
    names = tuple(sorted({m["params"]["data"]["instrument_name"] for m in fake.data}))
    port = free_port()

    async def main():
        async with serve(fake.handler, "127.0.0.1", port):
            cfg = BridgeConfig(
                url=f"ws://127.0.0.1:{port}",
                currencies=("BTC", "ETH"),
                instruments=names,
                interval="raw",
                max_messages=len(fake.data),
                duration_s=30,
                backoff_initial_s=0.1,
            )
            return await DeribitBridge(cfg, sink, kafka).run()

    sink = KafkaSink(kafka)
    stats = asyncio.run(main())
    sink.close()
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
