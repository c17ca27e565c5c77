"""The lake as operators check it: is every topic draining, what was quarantined and why, how big the
tables are. Read from the lake's own `ops` tables (the truth the drains commit), plus, optionally, the
brokers' log ends for the lag; one read-only snapshot, so the numbers agree with one another."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from derivlake.config import KafkaSettings, LakeSettings, redact_catalog
from derivlake.ingest.offsets import probe_log_ends
from derivlake.kafka_log import logged
from derivlake.lake.catalog import PARTITIONED_TABLES, lake_tables, open_lake, short_cause
from derivlake.reports.chain import chain_file
from derivlake.reports.margin import margin_html_file

if TYPE_CHECKING:
    import duckdb

SQL = Path(__file__).with_name("sql") / "status"
TEMPLATES = Path(__file__).with_name("templates")
# ingest_market_data runs every 5 minutes: a topic with messages waiting and no commit for three runs
STALE_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class TopicStatus:
    topic: str
    partitions: int
    next_offsets: dict[int, int]  # partition -> the next offset the lake will read (-1: the log start)
    last_commit: datetime | None
    newest_event: datetime | None
    messages_1h: int
    messages_24h: int
    rows_24h: int
    quarantined_24h: int
    duplicates_24h: int
    late_24h: int
    lag: int | None = None  # messages in Kafka not yet in the lake; None: not asked or unknown

    def stale(self, now: datetime) -> bool:
        """Messages wait (or might: lag unknown) and no drain committed for STALE_AFTER."""
        waiting = self.lag is None or self.lag > 0
        return waiting and (self.last_commit is None or now - self.last_commit > STALE_AFTER)


@dataclass(frozen=True)
class QuarantineReason:
    topic: str
    reason: str
    messages: int
    example: str  # partition:offset of the newest, to look up in ops.quarantine
    last_at: datetime


@dataclass(frozen=True)
class TableStatus:
    table: str
    files: int  # live data files now
    bytes: int
    # as the newest maintenance measured them (None until it has run on the table)
    rows: int | None
    partitions: int | None
    newest_partition: date | None
    measured_at: datetime | None
    # maintain_lake measures the date-partitioned tables (market, desk); the ops and reports tables
    # never get rows or partitions: their files and bytes only
    measurable: bool = True


@dataclass(frozen=True)
class OffsetResetRecord:
    topic: str
    partition: int
    old_offset: int
    new_offset: int
    reason: str
    messages_affected: int
    reset_at: datetime


@dataclass(frozen=True)
class ChainReport:
    as_of_date: date
    series: int
    underlyings: int
    snapshot: datetime  # the 08:00 UTC snapshot it was built from
    html: bool = False  # its HTML report is on disk (the page links to it)


@dataclass(frozen=True)
class MarginReport:
    as_of_date: date
    accounts: int
    margin_calls: int  # account x currency pairs in a margin call under either model
    unpriced_positions: int
    html: bool = False


@dataclass(frozen=True)
class Filing:
    as_of_date: date
    report: str
    sequence: int
    file_name: str
    records: int
    new_records: int
    cancelled_records: int
    generated_at: datetime


@dataclass(frozen=True)
class LakeStatus:
    generated_at: datetime
    catalog: str
    snapshot_id: int
    snapshot_time: datetime
    snapshots: int
    topics: tuple[TopicStatus, ...]
    quarantine: tuple[QuarantineReason, ...]
    tables: tuple[TableStatus, ...]
    resets: tuple[OffsetResetRecord, ...]
    chains: tuple[ChainReport, ...] = ()  # newest first
    margins: tuple[MarginReport, ...] = ()  # newest first
    filings: tuple[Filing, ...] = ()  # newest first
    lag_error: str | None = None  # why the lag is unknown (not asked, or the brokers did not answer)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def read_status(
    lake: LakeSettings,
    kafka: KafkaSettings | None = None,
    now: datetime | None = None,
    lag_timeout_s: float = 3.0,
) -> LakeStatus:
    """The lake's status at `now` (UTC; default the clock). With `kafka`, its topics not drained yet
    and each topic's lag too: brokers that do not answer within `lag_timeout_s` leave the lag unknown,
    never the page."""
    now = (now or datetime.now(UTC)).replace(tzinfo=None)
    con = open_lake(lake, read_only=True)
    try:
        con.execute("BEGIN TRANSACTION")  # one snapshot for every query below
        status = _read(con, lake, now)
        con.execute("COMMIT")
    finally:
        con.close()
    if kafka is None:
        return replace(status, lag_error="not asked of the brokers")
    # a configured topic no drain has committed from yet is shown too: it may be the one that fails
    drained = {t.topic for t in status.topics}
    never = [
        TopicStatus(t.name, t.partitions, {}, None, None, 0, 0, 0, 0, 0, 0)
        for t in kafka.topics
        if t.name not in drained
    ]
    topics = tuple(sorted([*status.topics, *never], key=lambda t: t.topic))
    try:
        ends = log_ends(kafka, [t.topic for t in topics], lag_timeout_s)
    except Exception as exc:  # the lake's part stands on its own
        return replace(
            status, topics=topics, lag_error=f"brokers {kafka.bootstrap_servers}: {short_cause(exc)}"
        )
    return replace(status, topics=tuple(_with_lag(t, ends.get(t.topic)) for t in topics))


def _read(con: duckdb.DuckDBPyConnection, lake: LakeSettings, now: datetime) -> LakeStatus:
    def rows(name: str, params: dict | None = None) -> list[tuple]:
        return con.execute((SQL / f"{name}.sql").read_text(), params or {}).fetchall()

    def when(table: str, name: str) -> list[tuple]:  # a report's table exists once one was built
        return rows(name) if table in tables else []

    tables = lake_tables(con)
    snapshot_id, snapshot_time, snapshots = rows("snapshot")[0]
    return LakeStatus(
        generated_at=now,
        catalog=redact_catalog(lake.catalog_spec),
        snapshot_id=int(snapshot_id),
        snapshot_time=snapshot_time,
        snapshots=int(snapshots),
        topics=tuple(TopicStatus(*r) for r in rows("topics", {"now": now})),
        quarantine=tuple(QuarantineReason(*r) for r in rows("quarantine", {"now": now})),
        tables=tuple(TableStatus(*r, measurable=r[0] in PARTITIONED_TABLES) for r in rows("tables")),
        resets=tuple(OffsetResetRecord(*r) for r in rows("resets")),
        chains=tuple(
            ChainReport(*r, html=chain_file(lake.reports_dir, r[0], "html").is_file())
            for r in when("reports.options_chain", "chains")
        ),
        margins=tuple(
            MarginReport(*r, html=margin_html_file(lake.reports_dir, r[0]).is_file())
            for r in when("reports.margin_accounts", "margins")
        ),
        filings=tuple(Filing(*r) for r in when("reports.regulatory_files", "filings")),
    )


def log_ends(
    kafka: KafkaSettings, topics: list[str], timeout_s: float
) -> dict[str, dict[int, tuple[int, int]]]:
    """Topic -> partition -> (log start, log end). Tansu lists the last batch's base offset + 1 as the
    end (architecture.md section 2), so the ends are probed as the drain probes them, all partitions at
    once. (Where a fetch does not answer in time, the listed end stays, and the lag is a lower bound.)"""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    # a probe needs one record batch per partition, not a prefetch of megabytes
    config = {"group.id": "derivlake-status", "enable.auto.commit": False, "enable.partition.eof": True,
              "fetch.wait.max.ms": 100, "max.partition.fetch.bytes": 65536,
              "queued.max.messages.kbytes": 4096}  # fmt: skip
    consumer = Consumer(logged(kafka.client_config(**config)))
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
        listed: dict[tuple[str, int], tuple[int, int]] = {}
        for topic in topics:
            meta = metadata.topics.get(topic)
            if meta is None or meta.error is not None:  # gone from the brokers: its lag is unknown
                continue
            for partition in meta.partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout_s
                )
                if high < 0:
                    raise KafkaException(f"no log end for {topic}[{partition}]")
                listed[topic, partition] = (low, high)
        probed = probe_log_ends(
            consumer, {tp: high for tp, (low, high) in listed.items() if high > low}, timeout_s
        )
        listed.update({tp: (listed[tp][0], end) for tp, end in probed.items()})
        ends: dict[str, dict[int, tuple[int, int]]] = {}
        for (topic, partition), bounds in listed.items():
            ends.setdefault(topic, {})[partition] = bounds
        return ends
    finally:
        consumer.close()


def _with_lag(topic: TopicStatus, ends: dict[int, tuple[int, int]] | None) -> TopicStatus:
    """Per partition: the log end less where the lake reads next (the log start for -1, or when
    retention deleted what the lake has not read: those are lost, not waiting)."""
    if ends is None:
        return topic
    lag = sum(max(high - max(topic.next_offsets.get(p, -1), low), 0) for p, (low, high) in ends.items())
    return replace(topic, lag=lag)


def render_html(status: LakeStatus) -> str:
    """The status as one self-contained page (no script, no external asset: it works offline and
    inside the Airflow UI's frame)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["ago"] = lambda t: _ago(status.generated_at, t)
    env.filters["num"] = lambda n: "" if n is None else f"{n:,}"
    env.filters["size"] = _size
    return env.get_template("status.html.j2").render(
        s=status, stale_after_minutes=int(STALE_AFTER.total_seconds() // 60)
    )


def _ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "never"
    seconds = (now - then.replace(tzinfo=None)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _size(n: int | None) -> str:
    if n is None:
        return ""
    if n < 1024:
        return f"{n} B"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1024
        if n < 1024 or unit == "TB":
            break
    return f"{n:.1f} {unit}"


def render_problem(message: str) -> str:
    """The page when the lake cannot be read (none yet, catalog down): the reason, not a stack trace."""
    import html

    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="60">'
        '<title>derivlake lake status</title></head><body style="font: 14px system-ui, sans-serif">'
        f"<h1>derivlake lake status</h1><p>{html.escape(message)}</p></body></html>"
    )
