"""The status page's arithmetic: lag per partition, staleness, and how sizes and ages read."""

from __future__ import annotations

from datetime import datetime, timedelta

from derivlake.lake.status import STALE_AFTER, TopicStatus, _ago, _size, _with_lag

NOW = datetime(2026, 12, 3, 12, 0)


def topic(
    next_offsets: dict[int, int], last_commit: datetime | None = NOW, lag: int | None = None
) -> TopicStatus:
    return TopicStatus("t", len(next_offsets), next_offsets, last_commit, None, 0, 0, 0, 0, 0, 0, lag)


def test_lag_counts_from_where_the_lake_reads_next_within_the_log() -> None:
    # p0: read to 90 of 100; p1: never read (-1), log 20..50; p2: retention deleted past what the
    # lake read (those are gone, not waiting); p3: a partition the lake has no row for yet
    t = topic({0: 90, 1: -1, 2: 5})
    ends = {0: (0, 100), 1: (20, 50), 2: (40, 60), 3: (0, 7)}
    assert _with_lag(t, ends).lag == 10 + 30 + 20 + 7
    assert _with_lag(t, None).lag is None  # topic unknown to the brokers: unknown, not 0
    assert _with_lag(topic({0: 120}), {0: (0, 100)}).lag == 0  # a listed end short of the real one


def test_stale_means_messages_wait_and_no_recent_commit() -> None:
    old = NOW - STALE_AFTER - timedelta(seconds=1)
    assert topic({0: 1}, old, lag=5).stale(NOW)
    assert topic({0: 1}, old, lag=None).stale(NOW)  # unknown lag: maybe waiting
    assert topic({0: 1}, None, lag=5).stale(NOW)  # never committed
    assert not topic({0: 1}, old, lag=0).stale(NOW)  # a quiet topic, all drained
    assert not topic({0: 1}, NOW - STALE_AFTER, lag=5).stale(NOW)


def test_sizes_and_ages_read_as_people_write_them() -> None:
    assert [_size(n) for n in (None, 0, 1023, 1024, 5 * 1024**2 + 1, 3 * 1024**4)] == [
        "", "0 B", "1023 B", "1.0 KB", "5.0 MB", "3.0 TB"
    ]  # fmt: skip
    assert _ago(NOW, None) == "never"
    assert _ago(NOW, NOW - timedelta(seconds=42)) == "42 s ago"
    assert _ago(NOW, NOW - timedelta(minutes=7)) == "7 min ago"
    assert _ago(NOW, NOW - timedelta(hours=3)) == "3 h ago"
    assert _ago(NOW, NOW - timedelta(days=2)) == "2 d ago"
