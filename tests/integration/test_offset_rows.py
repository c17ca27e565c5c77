"""Offset rows: one per partition, even when two drains of a new topic start at the same moment."""

from __future__ import annotations

import contextlib

import pytest

from derivlake.config import LakeSettings, TopicSpec
from derivlake.ingest.offsets import (
    ConcurrentDrain,
    OffsetReset,
    ensure_offset_rows,
    record_resets,
    stored_offsets,
)
from derivlake.lake.catalog import is_commit_conflict, open_lake

TOPIC = TopicSpec(kind="deribit.ticker", name="deribit.ticker", partitions=3, key_field="instrument_name")


def rows(con) -> list[tuple[str, int, int]]:
    return con.execute("SELECT topic, partition, next_offset FROM ops.kafka_offsets ORDER BY ALL").fetchall()


def test_two_drains_creating_a_topics_offset_rows_at_once_leave_one_row_each(
    lake_settings: LakeSettings,
) -> None:
    """On a Postgres catalog both inserts committed (DuckLake lets inserts into one table commit side by
    side): every partition had two rows, the compare-and-set matched two, and both drains dropped every
    batch, run after run. The claim row makes the second commit conflict; its retry finds the rows."""
    a, b = open_lake(lake_settings), open_lake(lake_settings)
    a.execute("BEGIN")
    b.execute("BEGIN")
    ensure_offset_rows(a, TOPIC, [0, 1, 2], "drain-a")
    ensure_offset_rows(b, TOPIC, [0, 1, 2], "drain-b")
    a.execute("COMMIT")
    with pytest.raises(Exception) as lost:
        b.execute("COMMIT")
    assert is_commit_conflict(lost.value), lost.value
    with contextlib.suppress(Exception):  # a failed COMMIT may have ended the transaction already
        b.execute("ROLLBACK")
    b.execute("BEGIN")
    ensure_offset_rows(b, TOPIC, [0, 1, 2], "drain-b")  # the retry: nothing to do
    b.execute("COMMIT")
    assert rows(b) == [("deribit.ticker", 0, -1), ("deribit.ticker", 1, -1), ("deribit.ticker", 2, -1)]
    assert stored_offsets(b, TOPIC) == {0: -1, 1: -1, 2: -1}


def test_doubled_offset_rows_are_made_one_and_disagreeing_ones_are_reported(
    lake_settings: LakeSettings,
) -> None:
    con = open_lake(lake_settings)
    con.execute(
        "INSERT INTO ops.kafka_offsets VALUES ('deribit.ticker', 0, 200, now()::TIMESTAMP, 'x'), "
        "('deribit.ticker', 0, 200, now()::TIMESTAMP, 'y'), ('deribit.ticker', 1, -1, now()::TIMESTAMP, 'x'), "
        "('deribit.ticker', 1, -1, now()::TIMESTAMP, 'y'), ('other', 0, 5, now()::TIMESTAMP, 'x')"
    )
    con.execute("BEGIN")
    ensure_offset_rows(con, TOPIC, [0, 1, 2], "drain-c")
    con.execute("COMMIT")
    assert rows(con) == [
        ("deribit.ticker", 0, 200),
        ("deribit.ticker", 1, -1),
        ("deribit.ticker", 2, -1),
        ("other", 0, 5),
    ]
    con.execute("INSERT INTO ops.kafka_offsets VALUES ('deribit.ticker', 2, 7, now()::TIMESTAMP, 'z')")
    con.execute("BEGIN")
    ensure_offset_rows(con, TOPIC, [0, 1, 2], "drain-d")
    con.execute("COMMIT")
    with pytest.raises(RuntimeError, match=r"conflicting rows for deribit\.ticker\[2\]: -1 and 7"):
        stored_offsets(con, TOPIC)


def test_a_reset_of_an_offset_another_drain_moved_resets_nothing_and_says_so(
    lake_settings: LakeSettings,
) -> None:
    """The reset's compare-and-set: it used to record the reset and start from the new offset even when
    its update matched no row, and the drain then failed on its first batch with nothing explained."""
    con = open_lake(lake_settings)
    con.execute("BEGIN")
    ensure_offset_rows(con, TOPIC, [0, 1, 2], "drain-e")
    con.execute("COMMIT")
    con.execute("UPDATE ops.kafka_offsets SET next_offset = 50 WHERE partition = 1")  # the other drain
    resets = [OffsetReset(0, -1, 10, "retention; reset to earliest", 10),
              OffsetReset(1, -1, 10, "retention; reset to earliest", 10)]  # fmt: skip
    with pytest.raises(
        ConcurrentDrain, match=r"deribit\.ticker\[1\]: another drain moved the stored offset -1"
    ):
        record_resets(con, lake_settings, TOPIC, resets, "drain-e")
    assert con.execute("SELECT count(*) FROM ops.offset_resets").fetchone()[0] == 0
    assert stored_offsets(con, TOPIC) == {0: -1, 1: 50, 2: -1}
    record_resets(con, lake_settings, TOPIC, resets[:1], "drain-e")
    assert stored_offsets(con, TOPIC) == {0: 10, 1: 50, 2: -1}
    assert con.execute("SELECT partition, old_offset, new_offset FROM ops.offset_resets").fetchall() == [
        (0, -1, 10)
    ]


def test_a_reset_retried_after_its_commit_landed_is_not_refused(lake_settings: LakeSettings) -> None:
    """A reset whose COMMIT reached a Postgres catalog but whose reply was lost (a failover at that
    moment) is retried: the retry finds its own record instead of failing on the offsets it moved
    itself and blaming another drain. Another run's reset of the same old offset is still refused."""
    con = open_lake(lake_settings)
    con.execute("BEGIN")
    ensure_offset_rows(con, TOPIC, [0, 1, 2], "drain-f")
    con.execute("COMMIT")
    resets = [OffsetReset(0, -1, 10, "retention; reset to earliest", 10)]
    record_resets(con, lake_settings, TOPIC, resets, "drain-f")
    record_resets(con, lake_settings, TOPIC, resets, "drain-f")  # the retry
    assert stored_offsets(con, TOPIC) == {0: 10, 1: -1, 2: -1}
    assert con.execute("SELECT count(*) FROM ops.offset_resets").fetchone()[0] == 1
    with pytest.raises(
        ConcurrentDrain, match=r"deribit\.ticker\[0\]: another drain moved the stored offset -1"
    ):
        record_resets(con, lake_settings, TOPIC, resets, "drain-g")
    later = [OffsetReset(0, -1, 20, "retention; reset to earliest", 20)]  # an Airflow retry, same run id
    with pytest.raises(ConcurrentDrain, match=r"deribit\.ticker\[0\]: another drain moved"):
        record_resets(con, lake_settings, TOPIC, later, "drain-f")
