"""Offsets of a drain: the lake's `ops.kafka_offsets` is the source of truth, Kafka's group offsets
are written afterwards for lag monitoring only.

Broker quirk (architecture.md section 2): Tansu answers ListOffsets(latest) with the base offset of
the last record batch + 1, short of the real log end. The real end comes from fetch responses, so a
stored offset beyond the listed end is confirmed by a fetch before it is called out of range.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from derivlake.config import LakeSettings, TopicSpec
from derivlake.lake.commit_guard import guarded_commit, now_ms

if TYPE_CHECKING:
    import duckdb
    from confluent_kafka import Consumer


SQL = Path(__file__).with_name("sql")


class OffsetOutOfRange(RuntimeError):
    """A stored offset lies outside the partition's log; a reset must be asked for explicitly."""


class ConcurrentDrain(RuntimeError):
    """Another drain moved the stored offsets this one started from: its batch or reset is stale and
    is dropped."""


@dataclass(frozen=True)
class OffsetReset:
    partition: int
    old_offset: int
    new_offset: int
    reason: str
    messages_affected: int


@dataclass(frozen=True)
class PartitionStart:
    partition: int
    stored: int  # the lake's offset this start was derived from: the compare-and-set's old value
    next_offset: int  # where this drain starts reading
    log_start: int
    log_end: int  # true end as seen by a fetch (or the listed end when it cannot be probed)


def ensure_offset_rows(
    con: duckdb.DuckDBPyConnection, topic: TopicSpec, partitions: list[int], run_id: str
) -> None:
    """Give every partition one row, starting at -1 (= the log start when first drained).

    In the caller's transaction. Writes only when a row is missing or doubled; it then updates the
    lake's claim row, so two drains doing this at once conflict and the second retries (on a Postgres
    catalog their inserts alone would both commit, and the compare-and-set would then match two rows
    and drop every batch). Exact doubles left by that race before the claim row existed are removed.
    """
    counts = dict(con.execute((SQL / "offset_row_counts.sql").read_text(), [topic.name]).fetchall())
    missing = [p for p in partitions if p not in counts]
    if not missing and all(n == 1 for n in counts.values()):
        return
    (claimed,) = con.execute((SQL / "claim_offset_rows.sql").read_text(), [run_id]).fetchone()
    if not claimed:
        raise RuntimeError("ops.offset_row_claims is empty: bootstrap inserts its row; was it deleted?")
    con.execute((SQL / "dedupe_offset_rows.sql").read_text(), {"topic": topic.name})
    if missing:
        con.executemany((SQL / "init_offset_row.sql").read_text(), [[topic.name, p] for p in missing])


def recorded_topic_id(con: duckdb.DuckDBPyConnection, topic: TopicSpec) -> str | None:
    """The topic id the lake's offsets of `topic` belong to (None: never recorded)."""
    row = con.execute((SQL / "recorded_topic_id.sql").read_text(), [topic.name]).fetchone()
    return row[0] if row else None


def topic_recreated(recorded: str | None, topic_id: str | None, stored: dict[int, int]) -> bool:
    """The broker's topic id differs from the one the lake's stored offsets were read from (an id
    that changed while no offset was stored yet is just recorded)."""
    return bool(topic_id and recorded and topic_id != recorded and any(o >= 0 for o in stored.values()))


def record_topic_id(con: duckdb.DuckDBPyConnection, topic: TopicSpec, topic_id: str, run_id: str) -> None:
    """In the caller's transaction."""
    con.execute((SQL / "record_topic_id.sql").read_text(), [topic.name, topic_id, run_id])


def stored_offsets(con: duckdb.DuckDBPyConnection, topic: TopicSpec) -> dict[int, int]:
    rows = con.execute((SQL / "stored_offsets.sql").read_text(), [topic.name]).fetchall()
    out = {}
    for partition, lo, hi in rows:
        if lo != hi:
            raise RuntimeError(
                f"ops.kafka_offsets has conflicting rows for {topic.name}[{partition}]: {lo} and {hi}"
            )
        out[int(partition)] = int(lo)
    return out


def probe_log_end(consumer: Consumer, topic: str, partition: int, listed_end: int, timeout_s: float) -> int:
    """Fetch from just before the listed end: the fetch response carries the real high watermark."""
    return probe_log_ends(consumer, {(topic, partition): listed_end}, timeout_s)[topic, partition]


def probe_log_ends(
    consumer: Consumer, listed_ends: dict[tuple[str, int], int], timeout_s: float
) -> dict[tuple[str, int], int]:
    """(topic, partition) -> its real end: all of them fetched at once from just before their listed
    ends (each fetch response carries the real high watermark). A partition that gives nothing
    within `timeout_s` keeps its listed end."""
    from confluent_kafka import TopicPartition

    ends = dict(listed_ends)
    if not ends:
        return ends
    pending = set(ends)
    consumer.assign([TopicPartition(t, p, max(end - 1, 0)) for (t, p), end in ends.items()])
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for msg in consumer.consume(1000, min(0.5, max(deadline - time.monotonic(), 0))):
            tp = (msg.topic(), msg.partition())
            if tp in pending:
                _, high = consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
                if high >= 0:
                    pending.discard(tp)
                    ends[tp] = max(high, ends[tp])
    consumer.unassign()
    return ends


def resolve_starts(
    consumer: Consumer,
    con: duckdb.DuckDBPyConnection,
    topic: TopicSpec,
    partitions: list[int],
    reset: str | None,
    timeout_s: float = 10.0,
    topic_id: str | None = None,
) -> tuple[list[PartitionStart], list[OffsetReset]]:
    """Where each partition's drain starts; out-of-range stored offsets raise unless `reset` is given.

    `reset` is 'earliest' or 'latest'; the resets it makes are returned for `record_resets`, which the
    caller commits before it drains (with the next batch would not do: a run with nothing to drain
    would forget them). `topic_id` is the topic's id on the broker now: when the lake's offsets belong
    to another id, the topic was created again and every stored offset is out of range, wherever it
    falls in the new log (one below the new log end used to be taken as is, skipping messages).
    """
    from confluent_kafka import TopicPartition

    stored = stored_offsets(con, topic)
    recorded = recorded_topic_id(con, topic)
    recreated = topic_recreated(recorded, topic_id, stored)
    # every partition's listed offsets before any probe: a ListOffsets request sent behind a probe's
    # fetch waits out that fetch's long poll on the broker connection
    listed = {
        p: consumer.get_watermark_offsets(TopicPartition(topic.name, p), timeout=timeout_s)
        for p in partitions
    }
    starts, resets = [], []
    for p in partitions:
        low, listed_high = listed[p]
        offset = stored.get(p, -1)
        if offset == -1:
            starts.append(PartitionStart(p, offset, low, low, listed_high))
            continue
        high = listed_high
        if offset > listed_high or (recreated and reset == "latest"):
            high = probe_log_end(consumer, topic.name, p, listed_high, timeout_s)
        problem = None
        if recreated:
            problem = (
                f"{topic.name}[{p}]: stored offset {offset} belongs to the topic's earlier incarnation "
                f"(topic id {recorded}; the broker's is now {topic_id}: the topic was deleted and created "
                "again, or an in-memory broker restarted); the messages it stood for are not in this log",
                "recreated",
                0,
            )
        elif offset < low:
            problem = (
                f"{topic.name}[{p}]: stored offset {offset} is before the log start {low}: "
                f"{low - offset} unread messages were deleted by retention",
                "retention",
                low - offset,
            )
        elif offset > high:
            problem = (
                f"{topic.name}[{p}]: stored offset {offset} is past the log end {high} "
                f"(topic recreated or broker restarted with empty storage?): "
                f"{offset - high} offsets are unknown",
                "past_end",
                offset - high,
            )
        if problem is None:
            starts.append(PartitionStart(p, offset, offset, low, high))
            continue
        message, reason, affected = problem
        if reset not in ("earliest", "latest"):
            raise OffsetOutOfRange(
                f"{message}. Nothing was drained. To accept it, rerun with --reset-offsets earliest|latest "
                "(or the DAG param reset_offsets); the reset is recorded in ops.offset_resets"
            )
        new = low if reset == "earliest" else max(high, low)
        if reset == "latest" and reason in ("retention", "recreated"):  # unread messages skipped too
            affected += new - low
        resets.append(OffsetReset(p, offset, new, f"{reason}; reset to {reset}", affected))
        starts.append(PartitionStart(p, new, new, low, high))
    return starts, resets


def record_resets(
    con: duckdb.DuckDBPyConnection,
    lake: LakeSettings,
    topic: TopicSpec,
    resets: list[OffsetReset],
    run_id: str,
    topic_id: str | None = None,
) -> None:
    """One transaction: each reset in `ops.offset_resets`, and its stored offset moved as a
    compare-and-set. If another drain moved one first, nothing is reset and ConcurrentDrain says so.
    `topic_id`, when the topic was created again: the id the offsets now belong to."""
    begun = now_ms()
    con.execute("BEGIN")
    if topic_id is not None:
        record_topic_id(con, topic, topic_id, run_id)
    for r in resets:
        con.execute(
            (SQL / "record_reset.sql").read_text(),
            [topic.name, r.partition, r.old_offset, r.new_offset, r.reason, r.messages_affected, run_id],
        )
        (updated,) = con.execute(
            (SQL / "commit_offset.sql").read_text(),  # the drain's own compare-and-set, for one partition
            {"run_id": run_id, "topic": topic.name, "partitions": [r.partition],
             "old_offsets": [r.old_offset], "new_offsets": [r.new_offset]},
        ).fetchone()  # fmt: skip
        if updated != 1:
            con.execute("ROLLBACK")
            if _resets_recorded(con, topic, resets, run_id):
                return  # this run's earlier attempt committed before the catalog connection dropped
            raise ConcurrentDrain(
                f"{topic.name}[{r.partition}]: another drain moved the stored offset {r.old_offset} while "
                "this one reset it; nothing was reset. Rerun to see where the partition stands"
            )
    guarded_commit(con, lake, ("ops.offset_resets", "ops.kafka_offsets", "ops.kafka_topics"), begun)


def _resets_recorded(
    con: duckdb.DuckDBPyConnection, topic: TopicSpec, resets: list[OffsetReset], run_id: str
) -> bool:
    """Whether these very resets are committed (by this run: an Airflow retry keeps the run id, so
    the offsets tell them from an earlier try's)."""
    recorded = con.execute((SQL / "recorded_resets.sql").read_text(), [run_id, topic.name]).fetchall()
    return {(r.partition, r.old_offset, r.new_offset) for r in resets} <= set(recorded)
