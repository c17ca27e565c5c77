"""Move quarantined messages that are usable now into the lake: `python -m derivlake quarantine replay`.

A message is quarantined for what the normalizer of its day could not use, and some of that becomes
usable later: a currency the venue listed after this version (DERIVLAKE_EXTRA_CURRENCIES), or a check
fixed in a newer release. A replay runs the quarantined raw bytes through today's normalizer, with the
drain's own stage and insert (duplicates of lake rows are dropped and counted), and commits per chunk
in ONE transaction: the rows, the removal of their messages from quarantine, the new reasons of those
still failing, and an `ops.quarantine_replays` record. A message is thus in its table or in quarantine,
never both and never neither, whatever is killed when. Two replays at once both update the
offset-row claim (ops.offset_row_claims): the second conflicts, retries, and finds the messages gone.
Memory is bounded by the chunk (DERIVLAKE_DRAIN_BATCH_MESSAGES messages), not by the quarantine.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from derivlake.config import DrainSettings, KafkaSettings, LakeSettings
from derivlake.ingest.drain import SQL, InsertedRows, insert_outputs, registered_stage
from derivlake.lake.catalog import locked_commit, open_lake
from derivlake.lake.commit_guard import guarded_commit, now_ms
from derivlake.normalize import normalizer_for
from derivlake.normalize.core import stage_batch

if TYPE_CHECKING:
    import duckdb

    from derivlake.normalize.spec import TopicNormalizer

log = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    topic: str
    examined: int = 0
    released: int = 0  # out of quarantine: as rows, or dropped as duplicates of lake rows
    duplicates: int = 0
    still_quarantined: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    def as_metadata(self) -> dict[str, object]:
        return {
            "topic": self.topic, "examined": self.examined, "released": self.released,
            "duplicates": self.duplicates, "still_quarantined": self.still_quarantined,
            "rows": {t: n for t, n in sorted(self.rows.items()) if n}, "dry_run": self.dry_run,
        }  # fmt: skip

    def summary(self) -> str:
        if self.dry_run:
            done = f"{self.released} would be released (dry run: nothing changed)"
        else:
            rows = ", ".join(f"{t} +{n}" for t, n in sorted(self.rows.items()) if n) or "no rows"
            done = f"{self.released} released ({rows}; {self.duplicates} duplicates dropped)"
        return f"{self.topic}: {self.examined} quarantined messages examined, {done}, {self.still_quarantined} still quarantined"


def replay_quarantine(
    kafka: KafkaSettings,
    lake: LakeSettings,
    topic: str,
    drain: DrainSettings | None = None,
    reason: str = "",
    dry_run: bool = False,
    run_id: str | None = None,
) -> ReplayResult:
    """Replay `topic`'s quarantined messages (those whose reason starts with `reason`) through today's
    normalizer; `dry_run` stages them and commits nothing."""
    drain = drain or DrainSettings.from_env()
    spec_topic = kafka.topic(topic)
    spec = normalizer_for(spec_topic.kind, drain.extra_currencies)
    run_id = run_id or f"replay-{uuid.uuid4().hex[:12]}"
    result = ReplayResult(spec_topic.name, dry_run=dry_run)
    con = open_lake(lake)
    stage_con = con.cursor()  # the stage's views stay off the transaction's connection
    cursor = (-1, -1)
    what, attempts = f"replay the quarantine of {spec_topic.name}", drain.commit_retries
    t0 = time.monotonic()
    try:
        while True:
            params = {"topic": spec_topic.name, "reason": reason, "chunk": drain.batch_messages,
                      "after_partition": cursor[0], "after_offset": cursor[1]}  # fmt: skip

            chunk = functools.partial(
                _replay_chunk, con, stage_con, lake, spec, params, run_id, result, dry_run
            )
            n, last = chunk() if dry_run else locked_commit(con, lake, what, chunk, attempts=attempts)
            if n == 0:
                break
            cursor = last
            log.info(
                "%s: %d quarantined messages examined, %d released (%.0f/s)",
                spec_topic.name, result.examined, result.released,
                result.examined / max(time.monotonic() - t0, 1e-9),
            )  # fmt: skip
    finally:
        stage_con.close()
        con.close()
    return result


def _replay_chunk(
    con: duckdb.DuckDBPyConnection,
    stage_con: duckdb.DuckDBPyConnection,
    lake: LakeSettings,
    spec: TopicNormalizer,
    params: dict,
    run_id: str,
    result: ReplayResult,
    dry_run: bool,
) -> tuple[int, tuple[int, int]]:
    """One chunk, read and replaced in one transaction: (messages examined, the chunk's last position)."""
    begun = now_ms()
    con.execute("BEGIN")
    raw = con.execute((SQL / "quarantine_chunk.sql").read_text(), params).to_arrow_table()
    if raw.num_rows == 0:
        con.execute("ROLLBACK")
        return 0, (-1, -1)
    last = (raw["kafka_partition"][-1].as_py(), raw["kafka_offset"][-1].as_py())
    staged = stage_batch(stage_con, raw, spec)
    released = raw.num_rows - staged.quarantined
    inserted = InsertedRows()
    with registered_stage(con, staged, replay_chunk=raw) as names:
        if dry_run:  # nothing written: the rows and duplicates are not known then
            con.execute("ROLLBACK")
        else:
            inserted = insert_outputs(con, spec, staged, names)
            topic = {"topic": params["topic"]}
            con.execute((SQL / "claim_offset_rows.sql").read_text(), [run_id])
            if released:
                con.execute((SQL / "quarantine_release.sql").read_text(), topic)
            if staged.quarantined:
                con.execute((SQL / "quarantine_rereason.sql").read_text(), topic)
            con.execute(
                (SQL / "record_replay.sql").read_text(),
                [run_id, params["topic"], raw.num_rows, released, sum(inserted.rows.values()),
                 inserted.duplicates, staged.quarantined],
            )  # fmt: skip
            tables = [*inserted.rows, "ops.quarantine", "ops.quarantine_replays", "ops.offset_row_claims"]
            guarded_commit(con, lake, tables, begun, inserted.dates)
    result.examined += raw.num_rows
    result.released += released
    result.duplicates += inserted.duplicates
    result.still_quarantined += staged.quarantined
    for table, n in inserted.rows.items():
        result.rows[table] = result.rows.get(table, 0) + n
    return raw.num_rows, last


def quarantine_summary(
    kafka: KafkaSettings, lake: LakeSettings, topics: list[str]
) -> tuple[list[str], list[tuple]]:
    """(columns, rows) of what the quarantine holds for `topics` (names or kinds), read-only."""
    names = [kafka.topic(t).name for t in topics]
    con = open_lake(lake, read_only=True)
    try:
        cur = con.execute((SQL / "quarantine_summary.sql").read_text(), {"topics": names})
        return [d[0] for d in cur.description], cur.fetchall()
    finally:
        con.close()


def run_replay_task(kind: str, params: dict[str, Any]) -> dict[str, object]:
    """The replay_quarantine DAG's task: one topic's replay, with the DAG run's params."""
    from derivlake.config import Settings

    settings = Settings.from_env()
    result = replay_quarantine(
        settings.kafka, settings.lake, kind, settings.drain,
        reason=str(params.get("reason") or ""), dry_run=bool(params.get("dry_run")),
    )  # fmt: skip
    log.info("%s", result.summary())
    return result.as_metadata()
