"""Drain throughput and memory, as ratios to baselines measured in the same run.

- drain_vs_consume_ratio: committed lake rows per second / a bare confluent-kafka consume loop.
- drain_vs_provider_ratio: our drain / the Airflow Kafka provider's ConsumeFromTopicOperator pattern
  (consume a batch, call an apply function per message, write Parquet with pyarrow, commit). The
  apply function builds the drain's own `market.options_ticker` row, so both do the same job; a `#`
  line adds the figure for the nine-field row the baseline used before. The baseline reads 300,000
  messages: with 100,000 its rate swung by a third between runs.
- drain_peak_rss_mb: peak RSS of a `python -m derivlake drain` process draining all messages with
  default settings (BENCH_DRAIN_MESSAGES, default 5,000,000 ~700-byte ticker messages).

Comment lines (`#`) add the CPU cost per message of the client process and of the broker process
(the embedded broker shares the machine's cores): the ceiling of the consume ratio is
(broker + bare client) / (broker + drain) CPU when all cores are busy. They also add a measured
ceiling: the drain's own read and parse stages, pipelined as in the drain, with no lake write at all,
and the read stage alone, which bounds a drain process on any number of cores.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from derivlake import broker  # noqa: E402
from derivlake.config import BrokerSettings, DrainSettings, KafkaSettings, LakeSettings, default_topics  # noqa: E402
from derivlake.ingest.drain import drain_topic  # noqa: E402
from derivlake.kafka_io import ensure_topics  # noqa: E402
from derivlake.lake.catalog import open_lake  # noqa: E402

N = int(os.environ.get("BENCH_DRAIN_MESSAGES", "5000000"))
N_RATIO = int(os.environ.get("BENCH_DRAIN_RATIO_MESSAGES", "1000000"))
N_PROVIDER = int(os.environ.get("BENCH_PROVIDER_MESSAGES", "300000"))


def ticker_template() -> bytes:
    """A realistic ~700-byte option ticker with a placeholder for a changing field."""
    # fmt: off
    payload = {
            "underlying_price": 60000.77, "underlying_index": "SYN.BTC-26DEC25", "timestamp": 1766736000000,
            "stats": {"volume": 12.3, "price_change": -1.5, "low": 0.081, "high": 0.09},
            "state": "open", "settlement_price": 0.0812, "open_interest": 1234.5, "min_price": 0.0001,
            "max_price": 0.3, "mark_price": 0.08334509, "mark_iv": 70.16, "last_price": 0.0835,
            "interest_rate": 0.0, "instrument_name": "BTC-26DEC25-60000-C", "index_price": 59990.1,
            "greeks": {"vega": 71.44, "theta": -120.4, "rho": 11.2, "gamma": 0.00003, "delta": 0.52},
            "estimated_delivery_price": 59990.1, "bid_iv": 69.5, "best_bid_price": 0.083,
            "best_bid_amount": 12.0, "best_ask_price": 0.0840, "best_ask_amount": 7.5, "ask_iv": 71.0,
    }
    # fmt: on
    return json.dumps(payload).encode()


def produce(kafka: KafkaSettings, n: int) -> float:
    from confluent_kafka import Producer

    topic = kafka.topic("deribit.ticker").name
    base = ticker_template()
    values = [
        base.replace(b'"timestamp": 1766736000000', f'"timestamp": {1766736000000 + i}'.encode())
        for i in range(1000)
    ]
    keys = [f"BTC-26DEC25-{60000 + 1000 * (i % 40)}-C".encode() for i in range(40)]
    # the headers the feeds send (architecture.md section 2): the drain reads `received_at`, and
    # converting a message's headers to Python is a real part of its cost
    headers = [
        [("source", b"deribit"), ("channel", b"ticker.BTC-26DEC25-60000-C.100ms"),
         ("received_at", b"%d" % ((1766736000000 + i) * 1000 + 1500))]
        for i in range(1000)
    ]  # fmt: skip
    p = Producer(
        kafka.client_config(**{"enable.idempotence": True, "linger.ms": 20, "batch.size": 1_000_000})
    )
    for i in range(n):
        while True:
            try:
                p.produce(topic, values[i % 1000], key=keys[i % 40], headers=headers[i % 1000])
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(120) == 0
    return sum(len(v) for v in values) / len(values)


class CpuMeter:
    """CPU seconds of this process and of the broker process over a block of work."""

    def __init__(self, broker_pid: int | None) -> None:
        import psutil

        self.broker = psutil.Process(broker_pid) if broker_pid else None

    def _now(self) -> tuple[float, float]:
        own = time.process_time()
        broker_cpu = sum(self.broker.cpu_times()[:2]) if self.broker else 0.0
        return own, broker_cpu

    def __enter__(self) -> CpuMeter:
        self.start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        self.own, self.broker_cpu = end[0] - self.start[0], end[1] - self.start[1]

    def report(self, label: str, messages: int) -> None:
        print(
            f"# {label}: client {self.own / messages * 1e6:.2f} CPU-us/msg, "
            f"broker {self.broker_cpu / messages * 1e6:.2f} CPU-us/msg",
            flush=True,
        )


def bare_consume(kafka: KafkaSettings, limit: int) -> float:
    from confluent_kafka import Consumer, TopicPartition

    spec = kafka.topic("deribit.ticker")
    c = Consumer(kafka.client_config(**{"group.id": "bench-bare", "enable.partition.eof": True}))
    c.assign([TopicPartition(spec.name, p, 0) for p in range(spec.partitions)])
    n = nbytes = 0
    eof = set()
    t0 = time.perf_counter()
    while len(eof) < spec.partitions and n < limit:
        for m in c.consume(10_000, 1.0):
            if m.error():
                eof.add(m.partition())
            else:
                n += 1
                nbytes += len(m.value())
    dt = time.perf_counter() - t0
    c.close()
    return n / dt


def read_and_parse(kafka: KafkaSettings, limit: int, parse: bool = True) -> float:
    """The drain's read stage (consume, Arrow batches) and parse stage (`stage_batch` on its own
    thread) over the bare consume's messages, with no lake write: no drain can beat this rate.
    Without `parse`, the read stage alone: it holds the GIL, so no drain process beats that rate on
    any number of cores."""
    from concurrent.futures import ThreadPoolExecutor

    import duckdb
    from confluent_kafka import TopicPartition

    from derivlake.ingest.drain import Drain, _Batch
    from derivlake.normalize.core import stage_batch

    spec = kafka.topic("deribit.ticker")
    drain = Drain(kafka, LakeSettings(home=Path(tempfile.gettempdir())), spec)  # its lake is never opened
    normalizer, settings, c = drain.spec, drain.settings, drain._consumer()  # the drain's own consumer
    c.assign([TopicPartition(spec.name, p, 0) for p in range(spec.partitions)])
    con, stager, done, pending = duckdb.connect(), ThreadPoolExecutor(1), set(), None
    if settings.duckdb_threads:
        con.execute(f"SET threads = {settings.duckdb_threads}")
    batch, n = _Batch(spec.name), 0
    gc.disable()  # as the drain does
    t0 = time.perf_counter()
    while len(done) < spec.partitions and n < limit:
        msgs = c.consume(10_000, 1.0)
        data = [m for m in msgs if m.error() is None]
        done.update(m.partition() for m in msgs if m.error() is not None)
        if data:
            batch.add(data, {}, set())
            n += len(data)
        if len(batch) >= settings.batch_messages or batch.nbytes >= settings.batch_bytes:
            if pending is not None:
                pending.result()
            raw, batch = batch.take_arrow(), _Batch(spec.name)
            pending = stager.submit(stage_batch, con, raw, normalizer) if parse else None
    if pending is not None:
        pending.result()
    if len(batch) and parse:
        stage_batch(con, batch.take_arrow(), normalizer)
    dt = time.perf_counter() - t0
    gc.enable()
    stager.shutdown()
    c.close()
    return n / dt


MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}


EPOCH = datetime(1970, 1, 1)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


def _received_at(message) -> datetime:
    """The feed's `received_at` header (µs), else the Kafka timestamp: what the drain keeps."""
    us = dict(message.headers() or ()).get("received_at")
    if us is None:
        return _utc(message.timestamp()[1])
    return EPOCH + timedelta(microseconds=int(us))


def options_ticker_row(message) -> dict:
    """The provider user's apply function: the same `market.options_ticker` row our drain writes
    (all 35 columns: strike, expiry and type from the name, timestamps, date, provenance)."""
    d = json.loads(message.value())
    name, greeks, stats = d["instrument_name"], d["greeks"], d["stats"]
    _, expiry, strike, kind = name.split("-")
    ts = _utc(d["timestamp"])
    return {
        "exchange": "deribit", "symbol": name, "timestamp": ts, "local_timestamp": _received_at(message),
        "type": "call" if kind == "C" else "put", "strike_price": float(strike.replace("d", ".")),
        "expiration": datetime(2000 + int(expiry[-2:]), MONTHS[expiry[-5:-2]], int(expiry[:-5]), 8),
        "open_interest": d["open_interest"], "last_price": d.get("last_price"),
        "bid_price": d["best_bid_price"], "bid_amount": d["best_bid_amount"], "bid_iv": d["bid_iv"],
        "ask_price": d["best_ask_price"], "ask_amount": d["best_ask_amount"], "ask_iv": d["ask_iv"],
        "mark_price": d["mark_price"], "mark_iv": d["mark_iv"], "underlying_index": d["underlying_index"],
        "underlying_price": d["underlying_price"], "delta": greeks["delta"], "gamma": greeks["gamma"],
        "vega": greeks["vega"], "theta": greeks["theta"], "rho": greeks["rho"], "index_price": d["index_price"],
        "interest_rate": d["interest_rate"], "settlement_price": d.get("settlement_price"),
        "estimated_delivery_price": d["estimated_delivery_price"], "volume": stats.get("volume"),
        "volume_usd": stats.get("volume_usd"), "state": d["state"], "date": ts.date(),
        "kafka_topic": message.topic(), "kafka_partition": message.partition(), "kafka_offset": message.offset(),
    }  # fmt: skip


def nine_fields_row(message) -> dict:
    """The baseline's apply function until 2026-11-30: nine fields, a quarter of the table."""
    d = json.loads(message.value())
    return {
        "symbol": d["instrument_name"], "timestamp": d["timestamp"], "mark_price": d["mark_price"],
        "mark_iv": d["mark_iv"], "bid": d["best_bid_price"], "ask": d["best_ask_price"],
        "delta": d["greeks"]["delta"], "partition": message.partition(), "offset": message.offset(),
    }  # fmt: skip


def provider_pattern(kafka: KafkaSettings, limit: int, out: Path, apply_function=options_ticker_row) -> float:
    """ConsumeFromTopicOperator with commit_cadence="end_of_batch": its loop, with the apply_function
    collecting rows and a Parquet file written per batch (max_batch_size 1000), then its `commit()`."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from confluent_kafka import Consumer, TopicPartition

    spec = kafka.topic("deribit.ticker")
    c = Consumer(kafka.client_config(**{"group.id": f"bench-{out.name}", "enable.auto.commit": False}))
    c.assign([TopicPartition(spec.name, p, 0) for p in range(spec.partitions)])
    rows: list[dict] = []
    n = files = 0
    t0 = time.perf_counter()
    while n < limit:
        msgs = c.consume(num_messages=1000, timeout=1.0)
        if not msgs:
            break
        for m in msgs:
            if m.error() is None:
                rows.append(apply_function(m))
                n += 1
        pq.write_table(pa.Table.from_pylist(rows), out / f"part-{files}.parquet")
        files += 1
        rows.clear()
        c.commit()  # the operator's call: asynchronous
    dt = time.perf_counter() - t0
    c.close()
    return n / dt


def main(tmp: Path) -> None:
    if N <= N_RATIO:  # the consume loops would reach the log end and wait out their poll timeout
        sys.exit(f"BENCH_DRAIN_MESSAGES ({N}) must exceed BENCH_DRAIN_RATIO_MESSAGES ({N_RATIO})")
    port = int(os.environ.get("BENCH_BROKER_PORT", "19492"))
    bs = BrokerSettings(port=port, run_dir=tmp / "broker")
    broker_pid = broker.start(bs).pid
    try:
        kafka = KafkaSettings(bootstrap_servers=bs.bootstrap, topics=default_topics(3, "bench."))
        ensure_topics(kafka)
        t0 = time.perf_counter()
        size = produce(kafka, N)
        print(f"# produced {N} messages of {size:.0f} bytes in {time.perf_counter() - t0:.1f}s", flush=True)

        with CpuMeter(broker_pid) as cpu:
            bare = bare_consume(kafka, N_RATIO)
        print(f"bare_consume_messages_per_sec {bare:.0f}", flush=True)
        cpu.report("bare consume", N_RATIO)
        with CpuMeter(broker_pid) as cpu:
            parse = read_and_parse(kafka, N_RATIO)
        cpu.report("read and parse, no lake write", N_RATIO)
        print(
            f"# read and parse, no lake write: {parse:.0f} msg/s, ceiling of the consume ratio {parse / bare:.3f}"
        )
        read = read_and_parse(kafka, N_RATIO, parse=False)
        print(f"# read stage alone (holds the GIL): {read:.0f} msg/s, {read / bare:.3f} of bare consume")
        for name in ("provider", "provider9"):
            (tmp / name).mkdir()
        prov = provider_pattern(kafka, N_PROVIDER, tmp / "provider")
        print(f"provider_pattern_messages_per_sec {prov:.0f}", flush=True)
        prov9 = provider_pattern(kafka, N_PROVIDER, tmp / "provider9", nine_fields_row)
        print(f"# provider pattern writing nine fields only: {prov9:.0f} msg/s", flush=True)

        # our drain of N_RATIO messages: a topic holding only those, into an existing lake (as in
        # production: the lake is created once, not per drain)
        lake = LakeSettings(home=tmp / "lake-ratio")
        open_lake(lake).close()
        settings = replace(DrainSettings(), idle_timeout_s=5)
        sub = KafkaSettings(bootstrap_servers=bs.bootstrap, topics=default_topics(3, "benchratio."))
        ensure_topics(sub)
        produce(sub, N_RATIO)
        t0 = time.perf_counter()
        with CpuMeter(broker_pid) as cpu:
            result = drain_topic(sub, lake, "deribit.ticker", settings)
        cpu.report("drain", result.messages)
        dt = time.perf_counter() - t0
        rows = sum(result.rows.values())
        drain_rate = rows / dt
        print(
            f"drain_rows_per_sec {drain_rate:.0f}  # {rows} rows committed in {result.batches} transactions"
        )
        print(f"drain_vs_consume_ratio {drain_rate / bare:.3f}")
        print(f"drain_vs_provider_ratio {drain_rate / prov:.3f}")
        print(f"# drain / provider pattern writing nine fields only: {drain_rate / prov9:.3f}")
        t0 = time.perf_counter()
        again = drain_topic(
            sub, lake, "deribit.ticker", settings
        )  # what a 5-minute run of a quiet topic pays
        print(f"# a drain with nothing new: {time.perf_counter() - t0:.2f}s ({again.messages} messages)")

        # peak memory of a default drain of everything, in its own process
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "include"),
            "KAFKA_BOOTSTRAP_SERVERS": bs.bootstrap,
            "DERIVLAKE_HOME": str(tmp / "lake-rss"),
            "DERIVLAKE_TOPIC_PREFIX": "bench.",
            "DERIVLAKE_DRAIN_IDLE_TIMEOUT_S": "5",
        }
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "derivlake", "drain", "--topic", "deribit.ticker", "--json"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        dt = time.perf_counter() - t0
        drained = json.loads(proc.stdout.strip().splitlines()[-1])["messages"]
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"# default drain of {drained} messages took {dt:.1f}s ({drained / dt:.0f} msg/s)")
        print(f"drain_peak_rss_mb {peak_mb:.0f}")
    finally:
        broker.stop(bs)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:  # lakes and Parquet go with it
        main(Path(tmp))
