"""`python -m derivlake feed simulate|replay|deribit`: the feeds, producing into the configured topics."""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)


def _iso(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="feed_command", required=True)
    sim = sub.add_parser("simulate", help="deterministic synthetic venue + desk activity")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--start", type=_iso, required=True, help="ISO time (UTC if no offset)")
    sim.add_argument("--end", type=_iso, required=True)
    sim.add_argument("--realtime", action="store_true", help="after [start, end), go on at wall-clock pace")
    sim.add_argument("--scale", choices=("small", "venue"), default="small")
    sim.add_argument("--rate", type=float, default=None, help="public trades per simulated second")
    for name in ("bad", "dup", "late", "gap"):
        sim.add_argument(f"--{name}-rate", type=float, default=0.0, metavar="P")
    rep = sub.add_parser("replay", help="replay a capture file or folder (fixtures/deribit-ws format)")
    rep.add_argument("path", type=Path)
    rep.add_argument(
        "--speed", type=float, default=0.0, help="0 = as fast as possible, X = X times real time"
    )
    der = sub.add_parser("deribit", help="live bridge from Deribit's public websocket API")
    der.add_argument("--currency", action="append", default=None, help="repeatable; default BTC and ETH")
    der.add_argument("--url", default="wss://www.deribit.com/ws/api/v2")
    der.add_argument("--instrument-limit", type=int, default=20, help="instruments per currency")
    der.add_argument("--interval", default="100ms", help="channel interval (raw needs authentication)")
    der.add_argument("--max-messages", type=int, default=None)
    der.add_argument("--duration", type=float, default=None, help="seconds")


def run(args: argparse.Namespace) -> int:
    from derivlake.config import KafkaSettings
    from derivlake.feed.producer import KafkaSink
    from derivlake.kafka_io import wait_for_broker

    settings = KafkaSettings.from_env()
    wait_for_broker(settings)
    if args.feed_command == "simulate":
        from derivlake.feed.simulator import SimulatorConfig, simulate

        config = SimulatorConfig(
            seed=args.seed,
            start=args.start,
            end=args.end,
            scale=args.scale,
            realtime=args.realtime,
            bad_rate=args.bad_rate,
            dup_rate=args.dup_rate,
            late_rate=args.late_rate,
            gap_rate=args.gap_rate,
            trade_rate=args.rate,
        )
        stats = simulate(config, KafkaSink(settings), settings)
        print(f"produced {stats.total} messages {dict(stats.messages)}; faults {dict(stats.faults)}")
        return 0
    if args.feed_command == "replay":
        from derivlake.feed.replay import replay

        rstats = replay(args.path, KafkaSink(settings), settings, speed=args.speed)
        print(f"replayed {rstats.total} messages {dict(rstats.per_channel)}")
        return 0
    from derivlake.feed.deribit_ws import BridgeConfig, run_bridge

    cfg = BridgeConfig(
        url=args.url,
        currencies=tuple(args.currency or ("BTC", "ETH")),
        instrument_limit=args.instrument_limit,
        interval=args.interval,
        max_messages=args.max_messages,
        duration_s=args.duration,
    )
    bstats = run_bridge(cfg, KafkaSink(settings), settings)
    print(f"bridged {bstats.produced} messages {dict(bstats.per_channel)}; reconnects {bstats.reconnects}")
    return 0
