"""Simulator throughput into a real embedded broker vs a bare produce loop of same-size messages.

Prints `feed_messages_per_sec`, `bare_produce_messages_per_sec` and `feed_vs_produce_ratio` (target >= 0.5),
and the venue's scale (`feed_option_series`: option series listed, each ticking every 10 s).
"""

from __future__ import annotations

import itertools
import socket
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from derivlake import broker
from derivlake.config import BrokerSettings, KafkaSettings, default_topics
from derivlake.feed.producer import KafkaSink
from derivlake.feed.simulator import SimulatorConfig, iter_messages, option_series, simulate
from derivlake.kafka_io import ensure_topics

N_MESSAGES = 200_000


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        own = BrokerSettings(port=_port(), run_dir=Path(tmp))
        broker.start(own)
        try:
            base = KafkaSettings(bootstrap_servers=own.bootstrap)
            start = datetime(2024, 12, 26, 9, tzinfo=UTC)
            cfg = SimulatorConfig(
                seed=1, start=start, end=datetime(2024, 12, 26, 12, tzinfo=UTC), scale="venue"
            )
            n_series = option_series(cfg)
            sample = list(itertools.islice(iter_messages(cfg), N_MESSAGES))
            avg = sum(len(m.value) for m in sample) // len(sample)
            span_ms = sample[-1].step_ms - sample[0].step_ms
            cfg = replace(cfg, end=datetime.fromtimestamp((sample[-1].step_ms) / 1000, UTC))
            del sample

            feed_topics = replace(base, topics=default_topics(3, "bfeed."))
            ensure_topics(feed_topics)
            t0 = time.perf_counter()
            stats = simulate(cfg, KafkaSink(feed_topics), feed_topics)
            feed_rate = stats.total / (time.perf_counter() - t0)

            bare = replace(base, topics=default_topics(3, "bbare."))
            ensure_topics(bare)
            topic = bare.topic("deribit.ticker").name
            payload, keys = b"x" * avg, [f"BTC-27DEC24-{k}-C".encode() for k in range(500)]
            sink = KafkaSink(bare)
            headers = [("source", b"simulator"), ("channel", b"ticker.x.100ms"), ("received_at", b"1")]
            t0 = time.perf_counter()
            for i in range(stats.total):
                sink.send(topic, keys[i % 500], payload, headers)
            sink.close()
            bare_rate = stats.total / (time.perf_counter() - t0)
        finally:
            broker.stop(own)
    print(f"feed_messages {stats.total}", file=sys.stderr)
    print(f"feed_simulated_seconds {span_ms / 1000:.0f}", file=sys.stderr)
    print(f"feed_avg_value_bytes {avg}", file=sys.stderr)
    print(f"feed_option_series {n_series}")
    print(f"feed_messages_per_sec {feed_rate:.0f}")
    print(f"bare_produce_messages_per_sec {bare_rate:.0f}")
    print(f"feed_vs_produce_ratio {feed_rate / bare_rate:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
