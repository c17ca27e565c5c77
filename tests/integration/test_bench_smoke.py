"""`make bench` stays runnable: the drain, dedup and lake benches run end to end at toy sizes and print
every figure. Their values at these sizes mean nothing; the figures themselves come from `make bench`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(name: str, expected: set[str], **env: str) -> None:
    """Run a bench and check it printed exactly the `expected` figures, each a positive number."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / name)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = {}
    for line in proc.stdout.splitlines():
        if line and not line.startswith("#"):
            figure, value = line.split()[:2]
            figures[figure] = float(value)
    assert set(figures) == expected
    assert all(v > 0 for v in figures.values()), figures


def test_drain_bench_prints_every_figure() -> None:
    run_bench(
        "bench_drain.py",
        {"bare_consume_messages_per_sec", "provider_pattern_messages_per_sec", "drain_rows_per_sec",
         "drain_vs_consume_ratio", "drain_vs_provider_ratio", "drain_peak_rss_mb"},
        BENCH_DRAIN_MESSAGES="20000",
        BENCH_DRAIN_RATIO_MESSAGES="6000",
        BENCH_PROVIDER_MESSAGES="6000",
        BENCH_BROKER_PORT=str(free_port()),
    )  # fmt: skip


def test_lake_bench_prints_every_figure() -> None:
    run_bench(
        "bench_lake.py",
        {"query_before_maintenance_seconds", "query_after_maintenance_seconds",
         "compacted_query_speedup_ratio", "files_after_maintenance_ratio"},
        BENCH_LAKE_BATCHES="4",
        BENCH_LAKE_SERIES="30",
    )  # fmt: skip


def test_dedup_bench_prints_every_figure() -> None:
    run_bench(
        "bench_dedup.py",
        {"book_dedup_early_seconds", "book_dedup_late_seconds", "book_dedup_late_vs_early_ratio"},
        BENCH_DEDUP_ROWS="200000",
        BENCH_DEDUP_BATCH="10000",
    )


def test_provider_baseline_writes_the_row_our_drain_writes() -> None:
    """The provider pattern's apply function must do the drain's job (the same options_ticker row),
    or the ratio compares unequal work."""
    import importlib.util
    import json

    import duckdb
    from confluent_kafka import Message

    from derivlake.ingest.drain import _Batch
    from derivlake.normalize import normalizer_for
    from derivlake.normalize.core import stage_batch

    module = importlib.util.spec_from_file_location("bench_drain", BENCH / "bench_drain.py")
    bench = importlib.util.module_from_spec(module)
    module.loader.exec_module(bench)
    payload = json.loads(bench.ticker_template())
    received = [("source", b"deribit"), ("received_at", b"1766736001234567")]  # the feed's header (µs)
    for name, headers in (("BTC-26DEC25-60000-C", received), ("SOL_USDC-3JAN26-142d5-P", None)):
        value = json.dumps({**payload, "instrument_name": name}).encode()
        msg = Message(
            topic="deribit.ticker", partition=2, offset=7, key=b"k", value=value, headers=headers,
            timestamp=(1, 1766736001234),
        )  # fmt: skip
        batch = _Batch("deribit.ticker")
        batch.add([msg], {}, set())
        staged = stage_batch(duckdb.connect(), batch.take_arrow(), normalizer_for("deribit.ticker"))
        (ours,) = dict(staged.outputs)["market.options_ticker"].to_pylist()
        assert bench.options_ticker_row(msg) == ours
