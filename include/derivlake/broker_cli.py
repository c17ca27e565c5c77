"""`python -m derivlake broker start|stop|status [--port N]`."""

from __future__ import annotations

import argparse
import sys

from derivlake import broker
from derivlake.config import BrokerSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument(
        "--port", type=int, default=None, help="listen port (default $DERIVLAKE_BROKER_PORT or 9092)"
    )


def run(args: argparse.Namespace) -> int:
    settings = BrokerSettings.from_env(port=args.port)
    try:
        if args.action == "start":
            result = broker.start(settings)
        elif args.action == "stop":
            result = broker.stop(settings)
        else:
            result = broker.status(settings)
    except broker.BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result.message)
    if args.action == "status":
        return 0 if result.running else 3
    return 0
