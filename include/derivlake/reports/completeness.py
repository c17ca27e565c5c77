"""Is the lake complete for business day D? The gate before any end-of-day product, and as_of validation.

The drains record, per committed batch, the newest exchange timestamp they wrote (`ops.ingest_runs.
max_event_ts`). Once every required topic has written an event at or after D 08:00, nothing of the day
[D-1 08:00, D 08:00) can still be in flight (per-partition order), so the chain may be built.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from derivlake.config import LakeSettings
from derivlake.reports.chain import BusinessDay

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

# the chain reads quotes, trades and, for the series expiring at D 08:00, the index TWAP 07:30-08:00
REQUIRED_TOPIC_KINDS: tuple[str, ...] = ("deribit.ticker", "deribit.trades", "deribit.index")
GATE_TIMEOUT_ENV = "DERIVLAKE_CHAIN_GATE_TIMEOUT_S"
GATE_POKE_ENV = "DERIVLAKE_CHAIN_GATE_POKE_S"
DEFAULT_GATE_TIMEOUT_S = 6 * 3600.0
DEFAULT_GATE_POKE_S = 60.0


class AsOfDateError(ValueError):
    """The requested business date is not one the chain can be built for; the message says why."""


class GateTimeout(RuntimeError):
    """The lake did not catch up with D 08:00 in time; the message names the lagging topics."""


@dataclass(frozen=True)
class Completeness:
    """Where each required topic's ingestion stands against the snapshot of D."""

    as_of: date
    snapshot: datetime
    watermarks: dict[str, datetime | None]  # topic kind -> newest event ingested (None: never)

    @property
    def lagging(self) -> dict[str, datetime | None]:
        return {k: ts for k, ts in self.watermarks.items() if ts is None or ts < self.snapshot}

    @property
    def complete(self) -> bool:
        return not self.lagging

    def describe(self) -> str:
        if self.complete:
            return f"lake complete for {self.as_of}: all of {', '.join(self.watermarks)} past {self.snapshot}"
        lag = "; ".join(
            f"{kind} ingested up to {ts.isoformat() if ts else 'nothing yet'}"
            for kind, ts in self.lagging.items()
        )
        return (
            f"lake not complete for {self.as_of} (needs events at/after {self.snapshot.isoformat()}): {lag}"
        )


def topic_kind(topic: str, kinds: tuple[str, ...] = REQUIRED_TOPIC_KINDS) -> str | None:
    """The logical kind of a (possibly prefixed) Kafka topic name: `t1.deribit.ticker` -> `deribit.ticker`."""
    for kind in kinds:
        if topic == kind or topic.endswith("." + kind) or topic.endswith(kind):
            return kind
    return None


def check_completeness(
    con: duckdb.DuckDBPyConnection, as_of: date, kinds: tuple[str, ...] = REQUIRED_TOPIC_KINDS
) -> Completeness:
    """Newest ingested event per required topic kind (max over prefixes and runs) against D 08:00."""
    rows = con.execute(
        "SELECT topic, max(max_event_ts) FROM ops.ingest_runs WHERE max_event_ts IS NOT NULL GROUP BY topic"
    ).fetchall()
    marks: dict[str, datetime | None] = dict.fromkeys(kinds)
    for topic, ts in rows:
        kind = topic_kind(topic, kinds)
        if kind is not None and (marks[kind] is None or ts > marks[kind]):
            marks[kind] = ts
    return Completeness(as_of, BusinessDay(as_of).snapshot, marks)


def gate_timeout_s() -> float:
    """The gate's patience, from the environment (tests shorten it)."""
    return float(os.environ.get(GATE_TIMEOUT_ENV) or DEFAULT_GATE_TIMEOUT_S)


def gate_poke_s() -> float:
    return float(os.environ.get(GATE_POKE_ENV) or DEFAULT_GATE_POKE_S)


def gate(status: Completeness, waited_s: float, timeout_s: float) -> bool:
    """True when complete; False to wait again; GateTimeout (naming the lagging topics) once out of time."""
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
    return con.execute(
        "SELECT min(timestamp) FROM market.options_ticker WHERE date = (SELECT min(date) FROM market.options_ticker)"
    ).fetchone()[0]


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
    timeout_s: float | None = None,
) -> tuple[bool, date]:
    """One poke of the DAG's gate: validate the business date (default: the run's), then check the lake.

    Raises AsOfDateError for a bad date and GateTimeout once `waited_s` reaches the timeout; otherwise
    returns (complete?, D). Opens the lake read-only, so the drains keep committing meanwhile. A
    scheduled run (no date asked for) on a lake the first drains have not filled yet waits like for
    a lagging topic: a new deployment's first run would otherwise fail before its data arrived.
    """
    from derivlake.lake.catalog import LakeMissing, open_lake

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
            status = Completeness(as_of, BusinessDay(as_of).snapshot, dict.fromkeys(REQUIRED_TOPIC_KINDS))
        else:
            now = datetime.now(UTC).replace(tzinfo=None)
            as_of = resolve_as_of_date(raw_as_of, default=default, now=now, first_quote=first)
            status = check_completeness(con, as_of)
    finally:
        if con is not None:
            con.close()
    log.info("%s (waited %.0fs)", status.describe(), waited_s)
    return gate(status, waited_s, gate_timeout_s() if timeout_s is None else timeout_s), as_of
