"""Is the lake complete for business day D? The gate before any end-of-day product, and as_of validation.

Per Kafka partition of the ticker, trade and index topics: a partition is complete for D once the lake
holds an event of it at or after D 08:00 (a partition is in order, so nothing of it before 08:00 can still
be in flight), or once it is quiet: the lake's stored offset has reached the partition's log end on the
broker, asked at least the feed's lateness after D 08:00. A per-topic watermark was not enough: while a
drain catches up batch by batch, one partition passes 08:00 before another's last quotes are committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from derivlake.config import ChainGateSettings, KafkaSettings, LakeSettings
from derivlake.reports.chain import BusinessDay

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

# the chain reads quotes, trades and, for the series expiring at D 08:00, the index TWAP 07:30-08:00
TOPIC_TABLES: dict[str, tuple[str, ...]] = {
    "deribit.ticker": ("market.options_ticker", "market.derivative_ticker"),
    "deribit.trades": ("market.trades",),
    "deribit.index": ("market.index_prices",),
}
REQUIRED_TOPIC_KINDS: tuple[str, ...] = tuple(TOPIC_TABLES)
# topics a live venue never leaves silent for an hour (tickers: every 100 ms, the index every second); a
# trades partition may well be (an illiquid market)
LIVE_TOPIC_KINDS: tuple[str, ...] = ("deribit.ticker", "deribit.index")
SQL = Path(__file__).with_name("sql")
NEWEST_EVENTS_SQL = SQL / "gate_newest_events.sql"
STORED_OFFSETS_SQL = SQL / "gate_stored_offsets.sql"
FIRST_QUOTE_SQL = SQL / "first_quote_time.sql"
PROGRESS_WINDOW = timedelta(hours=1)  # how far before 08:00 a lagging partition's newest event is looked for

# (topic, partitions) -> {partition: (log start, log end)}, asked of the broker
LogEnds = Callable[[str, list[int]], dict[int, tuple[int, int]]]


class AsOfDateError(ValueError):
    """The requested business date is not one the chain can be built for; the message says why."""


class GateTimeout(RuntimeError):
    """The lake did not catch up with D 08:00 in time; the message names the lagging partitions."""


@dataclass(frozen=True)
class PartitionMark:
    """Where one partition's ingestion stands for the business day."""

    topic: str
    partition: int
    newest: datetime | None  # its newest committed event past 08:00, else of the hour before (None: none)
    quiet: bool = False  # its stored offset had reached the log end when the broker was asked

    def passed(self, snapshot: datetime) -> bool:
        return self.newest is not None and self.newest >= snapshot

    def describe(self) -> str:
        if self.newest is None:
            return f"{self.topic}[{self.partition}] ingested nothing of the hour before 08:00 yet"
        return f"{self.topic}[{self.partition}] ingested up to {self.newest.isoformat()}"


@dataclass(frozen=True)
class Completeness:
    """Where each required topic's partitions stand against the snapshot of D."""

    as_of: date
    snapshot: datetime
    partitions: dict[str, tuple[PartitionMark, ...]]  # topic kind -> its partitions (none: never drained)
    broker_note: str = ""  # why quiet partitions could not be told (broker unreachable), if so

    def _done(self, mark: PartitionMark) -> bool:
        return mark.quiet or mark.passed(self.snapshot)

    def silent(self, kind: str) -> bool:
        """A live topic of which no partition has an event of the hour before 08:00 or after: quiet at
        its log end, it is a stopped feed, not a quiet market, and its last quotes would be hours old."""
        marks = self.partitions.get(kind, ())
        return kind in LIVE_TOPIC_KINDS and bool(marks) and all(m.newest is None for m in marks)

    @property
    def lagging(self) -> dict[str, tuple[PartitionMark, ...]]:
        """Topic kind -> its partitions not complete yet (empty: the topic was never drained)."""
        out = {}
        for kind, marks in self.partitions.items():
            behind = marks if self.silent(kind) else tuple(m for m in marks if not self._done(m))
            if behind or not marks:
                out[kind] = behind
        return out

    @property
    def complete(self) -> bool:
        return not self.lagging

    def describe(self) -> str:
        if self.complete:
            n = sum(map(len, self.partitions.values()))
            return f"lake complete for {self.as_of}: all {n} partitions of {', '.join(self.partitions)} past {self.snapshot} or caught up"
        lag = "; ".join(
            f"{kind}: no partition has an event of the hour before 08:00 (is the feed running?)"
            if self.silent(kind)
            else "; ".join(m.describe() for m in behind)
            if behind
            else f"{kind} ingested up to nothing yet"
            for kind, behind in self.lagging.items()
        )
        note = f" ({self.broker_note})" if self.broker_note else ""
        return f"lake not complete for {self.as_of} (needs events at/after {self.snapshot.isoformat()}): {lag}{note}"


def _newest_events(
    con: duckdb.DuckDBPyConnection, topics: list[str], since: datetime, until: datetime
) -> dict[tuple[str, int], datetime]:
    """(topic, partition) -> its newest committed event in [since, until)."""
    from derivlake.lake.catalog import lake_tables

    present = set(lake_tables(con))
    tables = [t for kind in REQUIRED_TOPIC_KINDS for t in TOPIC_TABLES[kind] if t in present]
    if not tables:
        return {}
    ts, day = "TIMESTAMP '{:%Y-%m-%d %H:%M:%S}'".format, "DATE '{:%Y-%m-%d}'".format
    bounds = {"since": ts(since), "until": ts(until), "date_from": day(since), "date_to": day(until)}
    template = NEWEST_EVENTS_SQL.read_text()
    sql = " UNION ALL ".join(f"({template.format(table=t, **bounds)})" for t in tables)
    newest: dict[tuple[str, int], datetime] = {}
    for topic, partition, at in con.execute(sql, {"topics": topics}).fetchall():
        key = (topic, int(partition))
        newest[key] = max(at, newest.get(key, at))
    return newest


def check_completeness(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    topics: dict[str, str],
    log_ends: LogEnds | None = None,
) -> Completeness:
    """Each partition of the `topics` (kind -> topic name) against D 08:00. `log_ends` asks the broker
    for the partitions not past 08:00, to tell the quiet ones; the caller gives it only once the feed's
    lateness after 08:00 has passed (None: no partition counts as quiet)."""
    day = BusinessDay(as_of)
    names = list(topics.values())
    rows = con.execute(STORED_OFFSETS_SQL.read_text(), [names]).fetchall()
    stored: dict[str, dict[int, int]] = {name: {} for name in names}
    for topic, partition, offset in rows:
        stored[topic][int(partition)] = int(offset)
    # past 08:00 (D's and the next day's files); then, for the partitions not past it, how close they
    # are: their newest event of the last hour before 08:00 (an older one is reported as nothing)
    newest = _newest_events(con, names, day.snapshot, day.snapshot + timedelta(days=2))
    if any((t, p) not in newest for t in names for p in stored[t]):
        newest = _newest_events(con, names, day.snapshot - PROGRESS_WINDOW, day.snapshot) | newest
    note = ""
    partitions: dict[str, tuple[PartitionMark, ...]] = {}
    for kind, topic in topics.items():
        marks = [PartitionMark(topic, p, newest.get((topic, p))) for p in stored[topic]]
        behind = [m.partition for m in marks if not m.passed(day.snapshot)]
        ends: dict[int, tuple[int, int]] = {}
        if behind and log_ends is not None:
            try:
                ends = log_ends(topic, behind)
            except Exception as exc:  # the broker down: quiet partitions wait, they are not guessed
                note = f"broker not reachable to tell quiet partitions: {exc}"
        for i, mark in enumerate(marks):
            if mark.partition in ends:
                low, end = ends[mark.partition]
                offset = stored[topic][mark.partition]
                marks[i] = replace(mark, quiet=(low if offset < 0 else offset) >= end)
        partitions[kind] = tuple(marks)
    return Completeness(as_of, day.snapshot, partitions, note)


def broker_log_ends(kafka: KafkaSettings, timeout_s: float = 5.0) -> LogEnds:
    """Log start and end of partitions, as the drain bounds them (the Tansu probe included)."""

    def ask(topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
        from confluent_kafka import Consumer, TopicPartition

        from derivlake.ingest.offsets import probe_log_ends
        from derivlake.kafka_log import logged

        consumer = Consumer(
            logged(kafka.client_config(**{"group.id": "derivlake.chain-gate", "enable.auto.commit": False}))
        )
        try:
            listed = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                for p in partitions
            }
            probed = probe_log_ends(
                consumer, {(topic, p): high for p, (low, high) in listed.items() if high > low}, timeout_s
            )
            return {p: (low, probed.get((topic, p), high)) for p, (low, high) in listed.items()}
        finally:
            consumer.close()

    return ask


def gate(status: Completeness, waited_s: float, timeout_s: float) -> bool:
    """True when complete; False to wait again; GateTimeout (naming the lagging partitions) once out of time."""
    if status.complete:
        return True
    if waited_s >= timeout_s:
        raise GateTimeout(f"gave up after {waited_s:.0f}s (timeout {timeout_s:.0f}s): {status.describe()}")
    return False


# ---------------------------------------------------------------------------------------------------------
# as_of_date


def business_day_of(ts: datetime) -> date:
    """The latest business day complete at `ts`: the day ending at the last 08:00 UTC at or before it."""
    return (ts.replace(tzinfo=None) - timedelta(hours=8)).date()


def first_quote_time(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The lake's first option quote (None: no data at all, or not even the table yet: the first drain
    attached the catalog and is still creating the tables). Read from the first date partition only."""
    from derivlake.lake.catalog import lake_tables

    if "market.options_ticker" not in lake_tables(con):
        return None
    return con.execute(FIRST_QUOTE_SQL.read_text()).fetchone()[0]


def resolve_as_of_date(
    raw: str | None, *, default: date, now: datetime, first_quote: datetime | None
) -> date:
    """Validate the `as_of_date` param (empty -> `default`): a real date, not in the future, and with the
    lake's first quote at or before its 08:00 snapshot (else the chain would be empty). The business day D
    is complete only at D 08:00 UTC, so D must be <= the business day of `now`."""
    text = (raw or "").strip()
    if not text:
        day = default
    else:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise AsOfDateError(f"as_of_date {raw!r} is not a date in YYYY-MM-DD form") from None
        if len(text) != 10:
            raise AsOfDateError(f"as_of_date {raw!r} is not a date in YYYY-MM-DD form")
    latest = business_day_of(now)
    if day > latest:
        raise AsOfDateError(
            f"as_of_date {day} is in the future: business day {day} ends at {day} 08:00 UTC and the latest "
            f"complete business day at {now:%Y-%m-%d %H:%M} UTC is {latest}"
        )
    if first_quote is None:
        raise AsOfDateError(
            "the lake holds no option quotes yet (market.options_ticker is empty): run a drain"
        )
    if BusinessDay(day).snapshot < first_quote:
        raise AsOfDateError(
            f"as_of_date {day} is before the lake's first data: its snapshot {day} 08:00 UTC precedes the "
            f"first option quote ({first_quote:%Y-%m-%d %H:%M:%S}), so its chain would be empty"
        )
    return day


def poke_gate(
    raw_as_of: str | None,
    run_ts: datetime,
    waited_s: float,
    *,
    settings: LakeSettings | None = None,
    kafka: KafkaSettings | None = None,
    gate_settings: ChainGateSettings | None = None,
) -> tuple[bool, date]:
    """One poke of the DAG's gate: validate the business date (default: the run's), then check the lake.

    Raises AsOfDateError for a bad date and GateTimeout once `waited_s` reaches the timeout; otherwise
    returns (complete?, D). Opens the lake read-only, so the drains keep committing meanwhile. A
    scheduled run (no date asked for) on a lake the first drains have not filled yet waits like for
    a lagging topic: a new deployment's first run would otherwise fail before its data arrived.
    """
    from derivlake.lake.catalog import LakeMissing, open_lake

    kafka = kafka or KafkaSettings.from_env()
    patience = gate_settings or ChainGateSettings.from_env()
    topics = {kind: kafka.topic(kind).name for kind in REQUIRED_TOPIC_KINDS}
    asked = bool((raw_as_of or "").strip())
    default = business_day_of(run_ts)
    try:
        con = open_lake(settings or LakeSettings.from_env(), read_only=True)
    except LakeMissing:
        if asked:
            raise
        con = None
    try:
        first = first_quote_time(con) if con is not None else None
        if first is None and not asked:
            as_of = default
            status = Completeness(as_of, BusinessDay(as_of).snapshot, dict.fromkeys(topics, ()))
        else:
            now = datetime.now(UTC).replace(tzinfo=None)
            as_of = resolve_as_of_date(raw_as_of, default=default, now=now, first_quote=first)
            late_enough = now >= BusinessDay(as_of).snapshot + timedelta(seconds=patience.lateness_s)
            status = check_completeness(con, as_of, topics, broker_log_ends(kafka) if late_enough else None)
    finally:
        if con is not None:
            con.close()
    log.info("%s (waited %.0fs)", status.describe(), waited_s)
    return gate(status, waited_s, patience.timeout_s), as_of
