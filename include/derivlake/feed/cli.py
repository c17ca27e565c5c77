"""`python -m derivlake feed simulate|replay|deribit`: the feeds, producing into the configured topics.

However a feed ends (its window done, SIGTERM or Ctrl-C, a failed delivery, an error), the producer is
flushed and the outcome reported: `delivered N of M messages to <broker>, L lost`. The exit status is 0
only if every message was acknowledged, so a supervisor restarts a feed that lost any.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from derivlake.config import KafkaSettings
    from derivlake.feed.producer import KafkaSink
    from derivlake.feed.stop import StopRequest

log = logging.getLogger(__name__)


def _iso(text: str) -> datetime:
    """An argparse type: its error names the expected format (argparse's own said `invalid _iso value`)."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO time: give e.g. 2026-12-01 or 2026-12-01T08:00:00Z (UTC if no offset)"
        ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _number(low: float, high: float, wanted: str) -> Callable[[str], float]:
    """An argparse type for a number in [low, high]: out of it is a typo, e.g. a fault rate (a
    probability per message) of 2."""

    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            x = math.nan
        if not low <= x <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}")
        return x

    return parse


_probability = _number(0.0, 1.0, "a probability: give a number from 0 to 1")
_non_negative = _number(0.0, math.inf, "a number of 0 or more")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="feed_command", required=True)
    sim = sub.add_parser("simulate", help="deterministic synthetic venue + desk activity")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--start", type=_iso, required=True, help="ISO time (UTC if no offset)")
    sim.add_argument("--end", type=_iso, required=True, help="ISO time, after --start")
    sim.add_argument("--realtime", action="store_true", help="after [start, end), go on at wall-clock pace")
    sim.add_argument("--scale", choices=("small", "venue"), default="small")
    sim.add_argument("--rate", type=_non_negative, default=None, help="public trades per simulated second")
    for name in ("bad", "dup", "late", "gap"):
        sim.add_argument(
            f"--{name}-rate", type=_probability, default=0.0, metavar="P", help="probability, 0 to 1"
        )
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
    from derivlake.feed.producer import DeliveryFailed, KafkaSink
    from derivlake.feed.stop import StopRequest, stop_on_signals
    from derivlake.kafka_io import wait_for_broker

    if args.feed_command == "simulate" and args.end <= args.start:
        print(
            f"error: --end {args.end.isoformat()} is not after --start {args.start.isoformat()}: the feed "
            "simulates [start, end), so give an end later than the start",
            file=sys.stderr,
        )
        return 2
    if args.feed_command == "replay":
        from derivlake.feed.replay import check_capture

        check_capture(args.path)  # before the broker: a wrong file is the user's to fix, not a retry
    settings = KafkaSettings.from_env()
    wait_for_broker(settings)  # a signal before this point has nothing to flush: it ends the process
    sink = KafkaSink(settings)
    stop = StopRequest()
    with stop_on_signals(stop):  # SIGTERM (docker stop, demo.sh, systemd) stops the feed like Ctrl-C
        try:
            print(_feed(args, sink, settings, stop), flush=True)
        except DeliveryFailed:
            pass  # the final count is the sink's, reported below
        except BaseException:
            _finish(sink, stop)  # flushed and reported before the error itself
            raise
        return _finish(sink, stop)


def _finish(sink: KafkaSink, stop: StopRequest) -> int:
    """Flush (once) and report delivered / lost; 0 if nothing was lost."""
    from derivlake.feed.producer import DeliveryFailed

    try:
        sink.close()
    except DeliveryFailed:
        pass
    except KeyboardInterrupt:  # a second signal while flushing
        unacked = sink.sent - sink.acked
        print(
            f"error: interrupted while flushing: {unacked} of {sink.sent} message(s) not acknowledged "
            f"by the broker {sink.broker}",
            file=sys.stderr,
            flush=True,
        )
        return 130
    why = f" (stopped by {stop.reason})" if stop else ""
    print(sink.summary() + why, flush=True)
    if sink.lost:
        print(
            f"error: {sink.lost} message(s) lost: not acknowledged by the broker {sink.broker} "
            f"(first error: {sink.first_error})",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


def _feed(args: argparse.Namespace, sink: KafkaSink, settings: KafkaSettings, stop: StopRequest) -> str:
    """Run the chosen feed into `sink`; returns its own one-line account."""
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
        stats = simulate(config, sink, settings, stop)
        return f"produced {stats.total} messages {dict(stats.messages)}; faults {dict(stats.faults)}"
    if args.feed_command == "replay":
        from derivlake.feed.replay import replay

        rstats = replay(args.path, sink, settings, speed=args.speed, stop=stop)
        return f"replayed {rstats.total} messages {dict(rstats.per_channel)}"
    from derivlake.config import DrainSettings
    from derivlake.feed.deribit_ws import BridgeConfig, run_bridge
    from derivlake.normalize.spec import unknown_currencies

    for cur in unknown_currencies(tuple(args.currency or ()), DrainSettings.from_env().extra_currencies):
        log.warning(
            "%s is not a currency the drains know: its messages will be quarantined (unknown_instrument) "
            "unless the drains run with DERIVLAKE_EXTRA_CURRENCIES including %s",
            cur, cur.upper(),
        )  # fmt: skip
    cfg = BridgeConfig(
        url=args.url,
        currencies=tuple(args.currency or ("BTC", "ETH")),
        instrument_limit=args.instrument_limit,
        interval=args.interval,
        max_messages=args.max_messages,
        duration_s=args.duration,
    )
    bstats = run_bridge(cfg, sink, settings, stop)
    return (
        f"bridged {bstats.produced} messages {dict(bstats.per_channel)}; reconnects {bstats.reconnects}, "
        f"instrument refreshes {bstats.refreshes} (+{bstats.listed} listed, -{bstats.delisted} gone)"
    )
