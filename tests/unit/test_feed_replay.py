"""Replay of a capture holding index notifications (the shared 2021 capture has none)."""

from __future__ import annotations

import json
from pathlib import Path

from derivlake.feed.producer import ListSink
from derivlake.feed.replay import replay


def test_replay_produces_index_notifications_into_deribit_index(tmp_path: Path) -> None:
    url = "wss://www.deribit.com/ws/api/v2"
    sub = {"jsonrpc": "2.0", "id": 1, "method": "public/subscribe",
           "params": {"channels": ["deribit_price_index.btc_usd", "deribit_price_index.sol_usdc"]}}  # fmt: skip
    data = [
        {"timestamp": 1626993724000, "price": 32185.41, "index_name": "btc_usd"},
        {"timestamp": 1626993724100, "price": 26.1234, "index_name": "sol_usdc"},
    ]
    lines = [f"{url} <-> 1626993723.1", f"{url} <- 1626993723.2: {json.dumps(sub)}"]
    for k, d in enumerate(data):
        note = {"jsonrpc": "2.0", "method": "subscription",
                "params": {"channel": f"deribit_price_index.{d['index_name']}", "data": d}}  # fmt: skip
        lines.append(f"1626993724.{k + 1}: {json.dumps(note)}")
    capture = tmp_path / "index.capture"
    capture.write_text("\n".join(lines) + "\n")

    sink = ListSink()
    stats = replay(capture, sink)
    assert stats.per_topic == {"deribit.index": 2}
    assert [(m.topic, m.key, json.loads(m.value)) for m in sink.messages] == [
        ("deribit.index", d["index_name"].encode(), d) for d in data
    ]
    assert dict(sink.messages[1].headers)["channel"] == b"deribit_price_index.sol_usdc"
