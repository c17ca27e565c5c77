"""The bounded, exactly-once drain of one topic into the lake.

A drain reads each partition from the offset stored in the lake up to the high watermark seen by its
first fetch (so a busy topic cannot keep it running), in batches capped by bytes and messages. Each
batch is committed in ONE lake transaction: rows, quarantined messages, the new offsets as a
compare-and-set on the old ones, and the run record. A crash before the commit leaves the lake as
it was; after it, the stored offsets say where to resume. Two drains of one topic cannot both
commit the same range: the loser of the compare-and-set (or of the catalog's conflict check)
drops its batch and resumes from the offsets the winner stored, up to its own bounds (the two
drains' batches need not cover the same partitions, so stopping could leave a range to neither).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from derivlake.config import DrainSettings, KafkaSettings, LakeSettings, TopicSpec
from derivlake.ingest.offsets import (
    ConcurrentDrain,
    PartitionStart,
    ensure_offset_rows,
    record_resets,
    record_topic_id,
    recorded_topic_id,
    resolve_starts,
    stored_offsets,
    topic_recreated,
)
from derivlake.kafka_io import BrokerUnavailable
from derivlake.kafka_log import logged
from derivlake.lake.catalog import catalog_connection_lost, is_connection_lost, locked_commit
from derivlake.lake.commit_guard import guarded_commit, now_ms
from derivlake.normalize import normalizer_for
from derivlake.normalize.core import ARROW_BATCH_ROWS, NAMED_REASONS, StagedBatch, stage_batch
from derivlake.normalize.spec import MS_TIMESTAMP_MAX, Output, TopicNormalizer

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

log = logging.getLogger(__name__)
# marks a log record whose text the CLI prints on stdout itself (cli.py's handler leaves it out)
SHOWN_BY_CLI = {"shown_by_cli": True}
SQL = Path(__file__).with_name("sql")
MESSAGE_KEY = "(kafka_partition::HUGEINT << 64) + kafka_offset"  # one number: cheaper to hash than a struct


class TopicMissing(RuntimeError):
    """The topic does not exist on the broker."""


class QuarantineThresholdExceeded(RuntimeError):
    """Too many bad messages: they are safely in ops.quarantine, but someone must look."""


@dataclass
class DrainResult:
    topic: str
    run_id: str
    messages: int = 0
    bytes: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    duplicates: int = 0
    late: int = 0
    batches: int = 0
    min_event_ts: datetime | None = None
    max_event_ts: datetime | None = None
    lag: int = 0
    offsets: dict[int, int] = field(default_factory=dict)
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    quarantine_examples: dict[str, str] = field(default_factory=dict)
    stopped_early: str = ""
    races_lost: int = 0  # passes cut short by another drain of the topic (each resumed after it)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for logs and the CLI; a drain cut short or raced says so."""
        line = (
            f"{self.topic}: {self.messages} messages ({self.bytes} bytes) in {self.batches} batches, "
            f"{self.seconds:.1f}s ({self.messages / max(self.seconds, 1e-9):.0f} msg/s); rows {self.rows}; "
            f"quarantined {self.quarantined}, duplicates {self.duplicates}, late {self.late}, lag {self.lag}"
        )
        if self.races_lost:
            line += f"; {self.races_lost} pass(es) resumed after another drain's commit"
        if self.stopped_early:
            line += f"; stopped early: {self.stopped_early}"
        return line

    def as_metadata(self) -> dict[str, object]:
        """Plain values for Airflow asset events and XCom."""
        return {
            "topic": self.topic,
            "run_id": self.run_id,
            "messages": self.messages,
            "bytes": self.bytes,
            "rows": dict(self.rows),
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "late": self.late,
            "batches": self.batches,
            "min_event_ts": self.min_event_ts.isoformat() if self.min_event_ts else None,
            "max_event_ts": self.max_event_ts.isoformat() if self.max_event_ts else None,
            "lag": self.lag,
            "offsets": {str(k): v for k, v in self.offsets.items()},
            "quarantine_reasons": dict(self.quarantine_reasons),
            "stopped_early": self.stopped_early,
            "races_lost": self.races_lost,
            "seconds": round(self.seconds, 3),
        }


class _Batch:
    """The messages read so far, as Arrow record batches: one per consume call, so the Python
    objects of a call are freed at once and memory is about the raw bytes (`batch_bytes` bound).
    Each message costs a handful of C accessor calls; everything else is done on whole arrays."""

    def __init__(self, topic: str, exploded_lists: int = 0, rows_per_message: float = 0.0) -> None:
        self.topic = topic
        self.exploded_lists = exploded_lists
        self.rows_per_message = rows_per_message  # of the last chunk read (0: none read yet)
        self.chunks: list[pa.RecordBatch] = []
        self.ranges: dict[int, tuple[int, int]] = {}  # partition -> (first offset, next offset)
        self.nbytes = 0
        self.count = 0
        self.rows = 0  # estimated rows the batch projects to

    def __len__(self) -> int:
        return self.count

    def add(self, msgs: list, bound: dict[int, int], done: set[int]) -> dict[int, int]:
        """Append `msgs` (data messages, partition order kept), dropping what lies at or beyond a
        partition's bound (the next run reads it); a partition that reached its bound goes to `done`.
        Returns each partition's next offset to read."""
        import numpy as np
        import pyarrow as pa

        partitions = [m.partition() for m in msgs]
        offsets = [m.offset() for m in msgs]
        # a partition's messages arrive in offset order: its first and last occurrences bound it
        last = dict(zip(partitions, offsets, strict=True))
        first = dict(zip(reversed(partitions), reversed(offsets), strict=True))
        position = {p: hi + 1 for p, hi in last.items()}
        chunk = pa.record_batch(
            {
                "kafka_topic": pa.repeat(pa.scalar(self.topic), len(msgs)),
                "kafka_partition": pa.array(partitions, pa.int32()),
                "kafka_offset": pa.array(offsets, pa.int64()),
                "key": pa.array([m.key() for m in msgs], pa.binary()),
                "value": pa.array([m.value() for m in msgs], pa.binary()),
                "received_at_us": _received_at_us(msgs),
            }
        )
        beyond = {p for p, hi in last.items() if hi + 1 >= bound.get(p, 1 << 62)}
        if beyond:  # the end of the run: cut the chunk at the bounds (rare, so numpy is fine)
            done.update(beyond)
            limits = np.array([bound.get(p, 1 << 62) for p in partitions], np.int64)
            keep = np.asarray(offsets, np.int64) < limits
            chunk = chunk.filter(pa.array(keep))
            last = {p: min(hi, bound.get(p, 1 << 62) - 1) for p, hi in last.items()}
            last = {p: hi for p, hi in last.items() if hi >= first[p]}
        if not chunk.num_rows:
            return position
        self.chunks.append(chunk)
        self.count += chunk.num_rows
        self.nbytes += chunk.column("value").nbytes
        rows = estimated_rows(chunk.column("value"), self.exploded_lists)
        self.rows += rows
        self.rows_per_message = rows / chunk.num_rows
        for p, hi in last.items():
            lo = self.ranges[p][0] if p in self.ranges else first[p]
            self.ranges[p] = (lo, hi + 1)
        return position

    def take_arrow(self) -> pa.Table:
        """The messages as one table of several batches (DuckDB parses them on all cores); the
        batch keeps only its counts and offsets, so the raw bytes are freed once they are parsed."""
        import pyarrow as pa

        table, self.chunks = pa.Table.from_batches(self.chunks), []
        return table

    def offset_ranges(self) -> dict[int, tuple[int, int]]:
        """Partition -> (first offset, next offset after the last)."""
        return dict(self.ranges)


def estimated_rows(values: pa.Array, exploded_lists: int, sample: int = 1_000) -> int:
    """The rows these messages project to: one each, or for exploded messages one per element of
    their lists (book levels), counted as '[' in `sample` messages spread over the chunk and scaled
    by bytes. It only sizes batches, so an estimate will do."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not exploded_lists:
        return len(values)
    picked = values.take(pa.array(range(0, len(values), max(1, len(values) // sample)), pa.int64()))
    elements = (pc.sum(pc.count_substring(picked, "[")).as_py() or 0) - exploded_lists * len(picked)
    picked_bytes = pc.sum(pc.binary_length(picked)).as_py() or 0
    return round(max(elements, 0) * (pc.sum(pc.binary_length(values)).as_py() or 0) / max(picked_bytes, 1))


def _received_at_us(msgs: list) -> pa.Array:
    """The feed's `received_at` header (µs), else the Kafka timestamp (ms)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    headers = [m.headers() for m in msgs]
    from_header = pa.array(
        [_header_us(h) for h in headers] if any(headers) else [None] * len(msgs), pa.int64()
    )
    if not from_header.null_count:  # the feed's messages all carry it: no broker timestamps needed
        return from_header
    broker_us = pc.multiply(pa.array([m.timestamp()[1] for m in msgs], pa.int64()), 1000)
    return pc.coalesce(from_header, broker_us)


def _header_us(headers: list | None) -> int | None:
    """The header's µs, or None (then the Kafka timestamp) when it is not a number of µs before the
    year 3000: one bad header must not stop the topic's drain (an int64 overflow did)."""
    for k, v in headers or ():
        if k == "received_at" and v:
            try:
                us = int(v)
            except ValueError:
                return None
            return us if 0 <= us < MS_TIMESTAMP_MAX * 1000 else None
    return None


class Drain:
    """One bounded drain of one topic; `run()` returns what it committed."""

    def __init__(
        self,
        kafka: KafkaSettings,
        lake: LakeSettings,
        topic: TopicSpec,
        drain: DrainSettings | None = None,
        reset_offsets: str | None = None,
        run_id: str | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self.kafka, self.lake, self.topic = kafka, lake, topic
        self.settings = drain or DrainSettings()
        self.reset_offsets = reset_offsets
        self.run_id = run_id or f"drain-{uuid.uuid4().hex[:12]}"
        self.spec = normalizer_for(topic.kind, self.settings.extra_currencies)
        self._con = con
        self._stage_con: duckdb.DuckDBPyConnection | None = None
        self._broken = False  # a batch failed to commit: the batches queued after it must not
        # (batch_no, stats) of a COMMIT whose connection dropped: if the catalog applied it anyway,
        # the retry must find it there rather than lose the compare-and-set to it
        self._unconfirmed: tuple[int, dict] | None = None
        self._lost_race = False  # another drain moved the offsets a batch started from

    # -- Kafka ---------------------------------------------------------------------------------
    def _consumer(self):
        from confluent_kafka import Consumer

        per_partition_kb = max(1024, self.settings.batch_bytes // 1024 // max(self.topic.partitions, 1))
        return Consumer(
            logged(
                self.kafka.client_config(
                    **{
                        "group.id": f"derivlake.{self.topic.kind}",
                        "enable.auto.commit": False,
                        "enable.auto.offset.store": False,
                        "enable.partition.eof": True,
                        "auto.offset.reset": "error",
                        "queued.max.messages.kbytes": per_partition_kb,
                        # librdkafka waits this long before fetching again once a partition's queue is
                        # full (default 1 s): with a bounded queue that idled the drain most of the time
                        "fetch.queue.backoff.ms": 10,
                        # an empty fetch waits this long on the broker (default 500 ms), and requests queued
                        # behind it on the connection wait too: a drain at the log end learns it 5x sooner
                        "fetch.wait.max.ms": 100,
                        "fetch.max.bytes": min(self.settings.batch_bytes, 52428800),
                        "socket.timeout.ms": 10000,
                        "session.timeout.ms": 10000,
                    }
                )
            )
        )

    def _broker_gone(self, consumer) -> str | None:
        """Why the broker does not answer a metadata request, or None when it does."""
        from confluent_kafka import KafkaException

        try:
            consumer.list_topics(self.topic.name, timeout=5)
        except KafkaException as exc:
            return str(exc.args[0].str() if exc.args else exc)
        return None

    def _partitions(self, consumer) -> list[int]:
        from confluent_kafka import KafkaException

        try:
            md = consumer.list_topics(self.topic.name, timeout=10)
        except KafkaException as exc:
            raise BrokerUnavailable(
                f"Kafka at {self.kafka.bootstrap_servers} did not answer a metadata request for "
                f"{self.topic.name} ({exc}); the next run retries"
            ) from None
        meta = md.topics.get(self.topic.name)
        if meta is None or meta.error is not None or not meta.partitions:
            raise TopicMissing(
                f"topic {self.topic.name} does not exist on {self.kafka.bootstrap_servers}; "
                "create it with `python -m derivlake broker start` (embedded) or the deployment's init"
            )
        return sorted(meta.partitions)

    # -- lake ----------------------------------------------------------------------------------
    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            from derivlake.lake.catalog import open_lake

            self._con = open_lake(self.lake)
            if self.settings.duckdb_threads:  # the staging cursor shares the database, and so its threads
                self._con.execute(f"SET threads = {int(self.settings.duckdb_threads)}")
        return self._con

    def _with_retries(self, what: str, fn):
        """Commit `fn`'s transaction under the lake's shared commit lock, retried while it loses races
        to other drains; a ConcurrentDrain is final."""
        return locked_commit(
            self.con, self.lake, what, fn, attempts=self.settings.commit_retries,
            lock_what=f"{self.topic.name} {what}", never_retry=(ConcurrentDrain,),
        )  # fmt: skip

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> DrainResult:
        with catalog_connection_lost(self.lake, "drain"):
            return self._run()

    def _run(self) -> DrainResult:
        from confluent_kafka import TopicPartition

        t0 = time.monotonic()
        result = DrainResult(self.topic.name, self.run_id)
        consumer = self._consumer()
        # Every consumed message is a GC-tracked object: the cyclic collector, triggered by them,
        # took a fifth of the drain's time. Nothing on this path builds reference cycles, so it
        # is paused for the bounded run (reference counting still frees every batch).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            partitions = self._partitions(consumer)
            topic_id = self._topic_id()
            self._with_retries("offset rows", lambda: self._init_offsets(partitions, topic_id))
            bound: dict[int, int] = {}  # fixed at the first fetch of each partition, for every pass
            while True:
                stored, starts, broker_lost = self._drain_pass(
                    consumer, partitions, topic_id, bound, result, t0
                )
                if not self._lost_race or broker_lost:
                    break
                # Another drain of the topic committed offsets this one read from. Its batches need
                # not cover this one's: each may have won one partition and lost the next, and two
                # drains that both stopped there left the rest to nobody (CI lost 200 messages).
                self._lost_race = False
                result.races_lost += 1
                # the next pass assigns them again: none may stay paused
                consumer.resume([TopicPartition(self.topic.name, p) for p in partitions])
                log.warning(
                    "%s: %s; resuming from the lake's offsets (race %d)",
                    self.topic.name, result.stopped_early, result.races_lost,
                )  # fmt: skip
                result.stopped_early = ""
            result.offsets = dict(stored)
            if broker_lost:  # what was read is committed; the rest waits for the broker
                raise BrokerUnavailable(
                    f"Kafka at {self.kafka.bootstrap_servers} stopped answering during the drain of "
                    f"{self.topic.name} ({broker_lost}); {result.messages} messages were committed, "
                    f"up to offsets {result.offsets}, and the next run resumes from there"
                )
            result.lag = sum(
                max(bound.get(p, s.log_end) - max(stored.get(p, s.next_offset), s.log_start), 0)
                for p, s in ((s.partition, s) for s in starts)
            )
            self._commit_group_offsets(consumer, stored)
        finally:
            if self._stage_con is not None:
                self._stage_con.close()
                self._stage_con = None
            consumer.close()
            if gc_was_enabled:
                gc.enable()
        result.seconds = time.monotonic() - t0
        log.info("drained %s", result.summary(), extra=SHOWN_BY_CLI)
        self._check_quarantine(result)
        return result

    def _drain_pass(
        self,
        consumer,
        partitions: list[int],
        topic_id: str | None,
        bound: dict[int, int],
        result: DrainResult,
        t0: float,
    ) -> tuple[dict[int, int], list[PartitionStart], str | None]:
        """Read from the lake's offsets up to the bounds, committing batch by batch; returns the
        offsets committed, where the pass started, and why the broker stopped answering (None: it
        did not). Stops early on a lost race (`_lost_race`)."""
        from confluent_kafka import KafkaError, TopicPartition

        starts, resets = resolve_starts(
            consumer, self.con, self.topic, partitions, self.reset_offsets, topic_id=topic_id
        )
        if resets:
            recreated = topic_id if any(r.reason.startswith("recreated") for r in resets) else None
            self._with_retries(
                "offset reset",
                lambda: record_resets(self.con, self.lake, self.topic, resets, self.run_id, recreated),
            )
        # the old values of the compare-and-set: exactly what the start positions came from
        stored = {s.partition: s.stored for s in starts}
        done: set[int] = set()
        consumer.assign([TopicPartition(self.topic.name, s.partition, s.next_offset) for s in starts])
        batch = self._new_batch()
        idle_since = time.monotonic()
        idle_stop = ""
        last_log = time.monotonic()
        # A three-stage pipeline (DuckDB releases the GIL): while a batch is read, the one before
        # is parsed on its own connection and the one before that commits. At most three batches
        # are in memory, and commits stay in order.
        stager = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lake-stage")
        committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lake-commit")
        inflight: deque[Future[bool]] = deque()
        position = {s.partition: s.next_offset for s in starts}
        broker_lost = None
        try:
            while len(done) < len(starts):
                want = max(1, min(10_000, self.settings.batch_messages - len(batch)))
                if batch.rows_per_message:  # book messages: no more than the row budget has room for
                    room = (self.settings.batch_rows - batch.rows) / batch.rows_per_message
                    want = max(1, min(want, int(room)))
                if len(bound) == len(starts):
                    # consume() waits for `want` messages or its timeout: ask for no more than are left
                    left = sum(max(hi - position[p], 0) for p, hi in bound.items() if p not in done)
                    want = max(1, min(want, left))
                msgs = consumer.consume(num_messages=want, timeout=self.settings.poll_timeout_s)
                data = [m for m in msgs if m.error() is None]
                for m in msgs if len(data) < len(msgs) else ():
                    err = m.error()
                    if err is None:
                        continue
                    if err.code() == KafkaError._PARTITION_EOF:
                        self._note_bound(consumer, m.partition(), bound)
                        if m.offset() >= bound.get(m.partition(), 0):
                            done.add(m.partition())
                    elif err.fatal() or err.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
                        raise BrokerUnavailable(
                            f"Kafka at {self.kafka.bootstrap_servers}: {err.str()}; nothing partial was "
                            "committed, the next run resumes from the stored offsets"
                        )
                    else:
                        raise RuntimeError(f"{self.topic.name}[{m.partition()}]: {err.str()}")
                if data:
                    idle_since = time.monotonic()
                    if len(bound) < len(starts):  # each partition's bound is fixed at its first fetch
                        for p in {m.partition() for m in data} - bound.keys():
                            self._note_bound(consumer, p, bound)
                    position.update(batch.add(data, bound, done))
                elif time.monotonic() - idle_since > self.settings.idle_timeout_s:
                    # noted only after the last flush: set now, it would drop the batches read so far
                    idle_stop = f"no data or end-of-partition for {self.settings.idle_timeout_s}s"
                    # librdkafka reports a broker that went away through logs, not through consume()
                    broker_lost = self._broker_gone(consumer)
                    break
                if (
                    batch.nbytes >= self.settings.batch_bytes
                    or len(batch) >= self.settings.batch_messages
                    or batch.rows >= self.settings.batch_rows
                ):
                    if len(inflight) == 2 and not inflight.popleft().result():
                        break
                    staged = stager.submit(self._stage, batch)
                    inflight.append(committer.submit(self._flush, batch, staged, stored, result))
                    batch = self._new_batch(batch.rows_per_message)
                for p in list(done):
                    consumer.pause([TopicPartition(self.topic.name, p)])
                if time.monotonic() - last_log > 10:
                    last_log = time.monotonic()
                    rate = result.messages / max(time.monotonic() - t0, 1e-9)
                    log.info(
                        "%s: %d messages committed (%.0f msg/s), %d partitions done of %d",
                        self.topic.name,
                        result.messages,
                        rate,
                        len(done),
                        len(starts),
                    )
            last_ok = all([f.result() for f in inflight])  # every one, in order: none is left running
            inflight.clear()
            if last_ok and len(batch):
                self._flush(batch, stager.submit(self._stage, batch), stored, result)
            result.stopped_early = result.stopped_early or idle_stop
        finally:
            for pool in (committer, stager):
                pool.shutdown(wait=True)  # an in-flight commit finishes (or fails) atomically
        return stored, starts, broker_lost

    def _new_batch(self, rows_per_message: float = 0.0) -> _Batch:
        return _Batch(self.topic.name, self.spec.exploded_lists, rows_per_message)

    def _init_offsets(self, partitions: list[int], topic_id: str | None) -> None:
        begun = now_ms()
        self.con.execute("BEGIN")
        ensure_offset_rows(self.con, self.topic, partitions, self.run_id)
        recorded = recorded_topic_id(self.con, self.topic)
        # a recreated topic's new id is recorded by the reset that accepts it (resolve_starts)
        stored = stored_offsets(self.con, self.topic)
        if topic_id and topic_id != recorded and not topic_recreated(recorded, topic_id, stored):
            record_topic_id(self.con, self.topic, topic_id, self.run_id)
        guarded_commit(
            self.con, self.lake, ("ops.kafka_offsets", "ops.offset_row_claims", "ops.kafka_topics"), begun
        )

    def _topic_id(self) -> str | None:
        """The topic's id on the broker (KIP-516), or None where the broker has none to give."""
        from confluent_kafka import TopicCollection
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(logged(self.kafka.client_config()))
        try:
            found = admin.describe_topics(TopicCollection([self.topic.name]), request_timeout=10)
            topic_id = str(found[self.topic.name].result(timeout=15).topic_id or "")
        except Exception as exc:  # an old broker, or no DescribeTopics permission: no check
            log.warning(
                "%s: no topic id from the broker (%s): a recreated topic goes unnoticed", self.topic.name, exc
            )
            return None
        return topic_id if topic_id.strip("A=") else None  # the all-zero id: the broker has none

    def _note_bound(self, consumer, partition: int, bound: dict[int, int]) -> None:
        from confluent_kafka import TopicPartition

        if partition not in bound:
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic.name, partition), cached=True)
            if high >= 0:
                bound[partition] = high

    def _stage(self, batch: _Batch) -> StagedBatch:
        """Parse and project a batch on the staging connection (a cursor of the lake's database)."""
        if self._stage_con is None:
            self._stage_con = self.con.cursor()
        return stage_batch(self._stage_con, batch.take_arrow(), self.spec)

    def _flush(
        self, batch: _Batch, staged: Future[StagedBatch], stored: dict[int, int], result: DrainResult
    ) -> bool:
        """Commit one batch; False when another drain got there first (ours is then dropped)."""
        started = datetime.utcnow()
        if self._broken or result.stopped_early:
            # an earlier batch of this run failed or lost to another drain: committing this one
            # would move the offsets past the earlier one's messages
            return False
        try:
            return self._flush_in_order(batch, staged, stored, result, started)
        except BaseException:
            self._broken = True
            raise

    def _flush_in_order(self, batch, staged, stored, result, started) -> bool:
        ranges = batch.offset_ranges()
        stale = [p for p, (first, _n) in ranges.items() if 0 <= first < stored.get(p, -1)]
        if stale:  # never expected: the batch starts before what the lake already holds
            result.stopped_early = f"partitions {stale} read below their stored offsets; batch dropped"
            log.error("%s: %s", self.topic.name, result.stopped_early)
            return False
        new_offsets = {p: nxt for p, (_first, nxt) in ranges.items()}
        try:
            staged_batch = staged.result()
            stats = self._with_retries(
                "commit",
                lambda: self._commit(
                    staged_batch, stored, new_offsets, started, result.batches, len(batch), batch.nbytes
                ),
            )
        except ConcurrentDrain as exc:
            result.stopped_early = str(exc)
            self._lost_race = True
            return False
        stored.update(new_offsets)
        result.batches += 1
        result.messages += len(batch)
        result.bytes += batch.nbytes
        for table, n in stats["rows"].items():
            result.rows[table] = result.rows.get(table, 0) + n
        result.quarantined += stats["quarantined"]
        result.duplicates += stats["duplicates"]
        result.late += stats["late"]
        for reason, n, example in stats["reasons"]:
            key = reason.split(":", 1)[0] if reason.startswith(NAMED_REASONS) else reason
            result.quarantine_reasons[key] += n
            result.quarantine_examples.setdefault(key, example)
        for ts_name, pick in (("min_ts", min), ("max_ts", max)):
            value = stats[ts_name]
            attr = "min_event_ts" if ts_name == "min_ts" else "max_event_ts"
            current = getattr(result, attr)
            if value is not None:
                setattr(result, attr, value if current is None else pick(current, value))
        return True

    def _commit(
        self, staged: StagedBatch, stored, new_offsets, started, batch_no, n_messages, n_bytes
    ) -> dict:
        con = self.con
        if self._unconfirmed is not None:
            sent_no, sent_stats = self._unconfirmed
            # if this raises, the next retry asks again
            landed = sent_no == batch_no and self._landed(batch_no, offset_moves(stored, new_offsets))
            self._unconfirmed = None
            if landed:
                log.warning(
                    "%s: batch %d was committed before the catalog connection dropped (it is in "
                    "ops.ingest_runs); not committing it again",
                    self.topic.name,
                    batch_no,
                )
                return sent_stats
        # the staged tables are registered inside the transaction: on the lake's connection each
        # registration outside one is a catalog transaction of its own (~3 ms)
        begun = now_ms()
        con.execute("BEGIN")
        with registered_stage(con, staged) as names:
            stats = self._commit_staged(
                con, staged, names, stored, new_offsets, started, batch_no, n_messages, n_bytes
            )
        tables = [*stats["rows"], "ops.kafka_offsets", "ops.ingest_runs"]
        tables += ["ops.quarantine"] if staged.quarantined else []
        try:
            guarded_commit(con, self.lake, tables, begun, stats["dates"])
        except Exception as exc:
            if is_connection_lost(exc):  # the catalog may have applied it: the retry looks first
                self._unconfirmed = (batch_no, stats)
            raise
        return stats

    def _landed(self, batch_no: int, moves: str) -> bool:
        """Whether this batch is committed (by this try or an earlier one that lost its connection)."""
        (n,) = self.con.execute(
            (SQL / "batch_landed.sql").read_text(), [self.run_id, self.topic.name, batch_no, moves]
        ).fetchone()
        return n > 0

    def _commit_staged(
        self, con, staged, names, stored, new_offsets, started, batch_no, n_messages, n_bytes
    ) -> dict:
        out = insert_outputs(con, self.spec, staged, names)
        if staged.quarantined:
            con.execute((SQL / "insert_quarantine.sql").read_text(), [self.run_id])
        reasons = con.execute((SQL / "quarantine_reasons.sql").read_text()).fetchall()
        parts = sorted(new_offsets)
        (updated,) = con.execute(
            (SQL / "commit_offset.sql").read_text(),
            {"run_id": self.run_id, "topic": self.topic.name, "partitions": parts,
             "old_offsets": [stored.get(p, -1) for p in parts], "new_offsets": [new_offsets[p] for p in parts]},
        ).fetchone()  # fmt: skip
        if updated != len(parts):
            con.execute("ROLLBACK")
            current = stored_offsets(con, self.topic)
            moved = {
                p: (stored.get(p, -1), current.get(p)) for p in parts if current.get(p) != stored.get(p, -1)
            }
            raise ConcurrentDrain(
                f"{self.topic.name}: another drain moved the offsets (partition: (ours, theirs)) {moved}; "
                "this drain's batch is dropped"
            )
        con.execute(
            (SQL / "record_batch.sql").read_text(),
            [self.run_id, self.topic.name, batch_no, started, n_messages, sum(out.rows.values()), n_bytes,
             staged.quarantined, out.duplicates, out.late, out.min_ts, out.max_ts,
             offset_moves(stored, new_offsets)],
        )  # fmt: skip
        return {
            "rows": out.rows, "quarantined": staged.quarantined, "duplicates": out.duplicates,
            "late": out.late, "min_ts": out.min_ts, "max_ts": out.max_ts, "reasons": reasons,
            "dates": out.dates,
        }  # fmt: skip

    def _commit_group_offsets(self, consumer, stored: dict[int, int]) -> None:
        """For lag dashboards only: the lake's offsets are the truth, so a failure here is a warning."""
        from confluent_kafka import TopicPartition

        offsets = [TopicPartition(self.topic.name, p, o) for p, o in stored.items() if o >= 0]
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as exc:
            log.warning("%s: group offset commit for lag monitoring failed: %s", self.topic.name, exc)

    def _check_quarantine(self, result: DrainResult) -> None:
        if not result.messages or not result.quarantined:
            return
        share = result.quarantined / result.messages
        if share > self.settings.quarantine_max_ratio:
            reasons = ", ".join(
                f"{reason} x{n} (e.g. partition:offset {result.quarantine_examples.get(reason)})"
                for reason, n in result.quarantine_reasons.most_common(5)
            )
            raise QuarantineThresholdExceeded(
                f"{self.topic.name}: {result.quarantined} of {result.messages} messages "
                f"({share:.1%}) quarantined, above the {self.settings.quarantine_max_ratio:.1%} threshold: "
                f"{reasons}. They are committed to ops.quarantine with the raw bytes; the offsets moved on."
            )


@dataclass
class InsertedRows:
    """What a staged batch's outputs added to their lake tables."""

    rows: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    late: int = 0
    min_ts: datetime | None = None
    max_ts: datetime | None = None
    dates: set = field(default_factory=set)


@contextlib.contextmanager
def registered_stage(
    con: duckdb.DuckDBPyConnection, staged: StagedBatch, **extra: pa.Table
) -> Iterator[list[str]]:
    """A staged batch's tables registered on `con` for the statements of its commit: one `stage_<i>` per
    output (the names yielded), `stage_quarantine`, and `extra` by name; all gone afterwards, with the
    `<stage>_new` tables `insert_outputs` adds."""
    names = [f"stage_{i}" for i in range(len(staged.outputs))]
    for name, (_table, rows) in zip(names, staged.outputs, strict=True):
        con.register(name, rows)
    con.register("stage_quarantine", staged.quarantine)
    for name, table in extra.items():
        con.register(name, table)
    try:
        yield names
    finally:  # unregistering works in a failed transaction too, and never raises for an unknown name
        for name in [*names, *(f"{n}_new" for n in names), "stage_quarantine", *extra]:
            con.unregister(name)


def insert_outputs(
    con: duckdb.DuckDBPyConnection, spec: TopicNormalizer, staged: StagedBatch, names: list[str]
) -> InsertedRows:
    """Insert the staged rows registered as `names` (one per output) into their tables, in the caller's
    transaction, less upstream duplicates (of one another and of the lake's rows)."""
    out = InsertedRows()
    for output, stage, (table, _rows) in zip(spec.outputs, names, staged.outputs, strict=True):
        ts_col = "valid_from" if table == "market.instruments" else "timestamp"
        if output.dedup_key:
            con.register(f"{stage}_new", con.sql(dedup_query(output, stage)).to_arrow_table(ARROW_BATCH_ROWS))
            before = _distinct_messages(con, stage)
            stage = f"{stage}_new"
            out.duplicates += before - _distinct_messages(con, stage)
        n_rows, n_late, lo, hi, days = con.execute(
            (SQL / "batch_stats.sql")
            .read_text()
            .format(
                stage=stage,
                ts=ts_col,
                late=f"count(DISTINCT {MESSAGE_KEY})" if output.exploded else "count(*)",
            )
        ).fetchone()
        if n_rows:
            exclude = "EXCLUDE (msg_pos)" if output.dedup_key else ""
            con.execute(
                (SQL / "insert_rows.sql").read_text().format(table=table, stage=stage, exclude=exclude)
            )
        out.rows[table] = int(n_rows)
        out.dates.update(days or ())
        out.late += int(n_late)
        out.min_ts = lo if out.min_ts is None or (lo is not None and lo < out.min_ts) else out.min_ts
        out.max_ts = hi if out.max_ts is None or (hi is not None and hi > out.max_ts) else out.max_ts
    return out


def _distinct_messages(con: duckdb.DuckDBPyConnection, stage: str) -> int:
    sql = (SQL / "distinct_messages.sql").read_text().format(stage=stage, message_key=MESSAGE_KEY)
    return con.execute(sql).fetchone()[0]


def offset_moves(stored: dict[int, int], new_offsets: dict[int, int]) -> str:
    """A batch's compare-and-set as ops.ingest_runs records it: `partition:old->new`, comma-separated."""
    return ",".join(f"{p}:{stored.get(p, -1)}->{o}" for p, o in sorted(new_offsets.items()))


def dedup_query(out: Output, stage: str) -> str:
    """The rows of the registered `stage` that are not upstream duplicates of one another or of
    the lake's rows (in the partitions the batch touches)."""
    if out.versions_of:
        return (SQL / "dedup_versions.sql").read_text().format(
            stage=stage, key=", ".join(out.dedup_key), table=out.table, entity=out.versions_of,
            message_key=MESSAGE_KEY,
        )  # fmt: skip
    keys = (*out.dedup_key, *(("timestamp",) if out.dedup_same_time else ()))
    match = " ".join(f"AND x.{k} IS NOT DISTINCT FROM s.{k}" for k in out.dedup_key)
    if out.dedup_same_time:  # `=`: DuckDB prunes the lake's files by the batch's time range only then
        match += " AND x.timestamp = s.timestamp"
    return (SQL / "dedup.sql").read_text().format(
        stage=stage, key=", ".join(keys), table=out.table, key_match=match, message_key=MESSAGE_KEY,
        date_filter=f"x.date IN (SELECT DISTINCT date FROM {stage})",
    )  # fmt: skip


def drain_topic(
    kafka: KafkaSettings,
    lake: LakeSettings,
    topic: str,
    drain: DrainSettings | None = None,
    reset_offsets: str | None = None,
    run_id: str | None = None,
) -> DrainResult:
    """Drain one topic (by name or kind) once, exactly as the DAG task does."""
    return Drain(kafka, lake, kafka.topic(topic), drain, reset_offsets, run_id).run()


__all__ = ["ConcurrentDrain", "Drain", "DrainResult", "PartitionStart", "QuarantineThresholdExceeded",
           "TopicMissing", "dedup_query", "drain_topic"]  # fmt: skip
