"""The completeness gate and the as_of_date validation of the end-of-day chain."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from derivlake.config import ChainGateSettings, LakeSettings
from derivlake.lake.catalog import open_lake
from derivlake.reports.completeness import (
    AsOfDateError,
    Completeness,
    GateTimeout,
    PartitionMark,
    business_day_of,
    check_completeness,
    first_quote_time,
    gate,
    resolve_as_of_date,
)

D = date(2024, 3, 8)
SNAP = datetime(2024, 3, 8, 8)


TOPICS = {
    "deribit.ticker": "p.deribit.ticker",
    "deribit.trades": "p.deribit.trades",
    "deribit.index": "p.deribit.index",
}


def _status(**newest: list[datetime | None]) -> Completeness:
    """Partitions per kind (ticker, trades, index) by their newest event; index past 08:00 unless given."""
    newest.setdefault("index", [SNAP])
    return Completeness(
        D,
        SNAP,
        {
            f"deribit.{kind}": tuple(PartitionMark(f"p.deribit.{kind}", i, ts) for i, ts in enumerate(marks))
            for kind, marks in newest.items()
        },
    )


def test_complete_only_when_every_partition_passed_the_snapshot_or_is_quiet() -> None:
    assert _status(ticker=[SNAP, SNAP], trades=[datetime(2024, 3, 8, 9)]).complete
    # one trades partition behind: the topic's newest event (09:00, another partition) does not cover it
    lagging = _status(ticker=[SNAP], trades=[datetime(2024, 3, 8, 9), datetime(2024, 3, 8, 7, 59, 59)])
    assert not lagging.complete
    assert [(k, [m.partition for m in ms]) for k, ms in lagging.lagging.items()] == [("deribit.trades", [1])]
    assert "p.deribit.trades[1] ingested up to 2024-03-08T07:59:59" in lagging.describe()
    assert "trades[0]" not in lagging.describe() and "ticker" not in lagging.describe()
    quiet = PartitionMark("p.deribit.trades", 1, datetime(2024, 3, 8, 7, 59, 59), quiet=True)
    assert Completeness(D, SNAP, {**lagging.partitions, "deribit.trades": (quiet,)}).complete
    never = _status(ticker=[], trades=[SNAP, None])
    assert list(never.lagging) == ["deribit.ticker", "deribit.trades"]
    assert "deribit.ticker ingested up to nothing yet" in never.describe()
    assert "p.deribit.trades[1] ingested nothing of the hour before 08:00 yet" in never.describe()


def test_gate_waits_then_times_out_naming_the_lagging_partition() -> None:
    ok = _status(ticker=[SNAP], trades=[SNAP])
    late = _status(ticker=[SNAP], trades=[SNAP, datetime(2024, 3, 8, 7, 30)])
    assert gate(ok, waited_s=10_000, timeout_s=60) is True
    assert gate(late, waited_s=59, timeout_s=60) is False
    with pytest.raises(GateTimeout, match=r"p\.deribit\.trades\[1\] ingested up to 2024-03-08T07:30:00"):
        gate(late, waited_s=60, timeout_s=60)


def _offsets(con, *partitions: tuple[str, int]) -> None:
    con.executemany(
        "INSERT INTO ops.kafka_offsets VALUES (?, ?, 10, now()::TIMESTAMP, 'test')",
        [list(p) for p in partitions],
    )


def _event(con, kind: str, partition: int, ts: str) -> None:
    """A committed row of the topic's partition (only the columns the gate reads matter)."""
    table, name = {"ticker": ("market.options_ticker", "symbol"), "perp": ("market.derivative_ticker", "symbol"),
                   "trades": ("market.trades", "symbol"), "index": ("market.index_prices", "index_name")}[kind]  # fmt: skip
    topic = "p.deribit." + ("ticker" if kind == "perp" else kind)
    con.execute(
        f"INSERT INTO {table} ({name}, timestamp, date, kafka_topic, kafka_partition, kafka_offset) "
        "VALUES ('x', ?::TIMESTAMP, ?::TIMESTAMP::DATE, ?, ?, 0)",
        [ts, ts, topic, partition],
    )


def test_check_completeness_reads_each_partitions_newest_committed_event(lake_settings: LakeSettings) -> None:
    con = open_lake(lake_settings)
    try:
        assert check_completeness(con, D, TOPICS).lagging == {kind: () for kind in TOPICS}
        _offsets(con, *[(t, p) for t in TOPICS.values() for p in (0, 1)])
        _event(con, "ticker", 0, "2024-03-08 07:00:00")
        _event(con, "perp", 0, "2024-03-08 08:00:01")  # the topic feeds both ticker tables
        _event(con, "ticker", 1, "2024-03-08 09:00:00")
        _event(con, "trades", 0, "2024-03-08 08:30:00")
        _event(con, "trades", 1, "2024-03-08 07:59:00")
        _event(con, "trades", 1, "2024-03-07 07:59:00")  # the day before, past its own 08:00: not D's
        _event(con, "index", 0, "2024-03-08 08:00:00")
        _event(con, "index", 1, "2024-03-09 00:00:00")
        status = check_completeness(con, D, TOPICS)
        assert status.partitions["deribit.ticker"][0].newest == datetime(2024, 3, 8, 8, 0, 1)
        assert {k: [m.partition for m in ms] for k, ms in status.lagging.items()} == {"deribit.trades": [1]}
        assert "p.deribit.trades[1] ingested up to 2024-03-08T07:59:00" in status.describe()
        _event(con, "trades", 1, "2024-03-08 08:00:00")
        assert check_completeness(con, D, TOPICS).complete
        assert not check_completeness(con, date(2024, 3, 9), TOPICS).complete
        # another prefix's topics are not this deployment's
        other = {k: "q" + v[1:] for k, v in TOPICS.items()}
        assert check_completeness(con, D, other).lagging == {kind: () for kind in TOPICS}
        assert first_quote_time(con) == datetime(2024, 3, 8, 7)
    finally:
        con.close()


def test_the_gate_waits_for_the_index_of_the_delivery_price(lake_settings: LakeSettings) -> None:
    """Series expiring at D 08:00 settle at the index TWAP 07:30-08:00: quotes and trades past 08:00 are
    not enough while the index topic has not reached 08:00."""
    con = open_lake(lake_settings)
    try:
        _offsets(con, *[(t, 0) for t in TOPICS.values()])
        _event(con, "ticker", 0, "2024-03-08 08:10:00")
        _event(con, "trades", 0, "2024-03-08 08:10:00")
        _event(con, "index", 0, "2024-03-08 07:45:00")
        status = check_completeness(con, D, TOPICS)
        assert list(status.lagging) == ["deribit.index"]
        with pytest.raises(GateTimeout, match=r"p\.deribit\.index\[0\] ingested up to 2024-03-08T07:45:00"):
            gate(status, waited_s=60, timeout_s=60)
        _event(con, "index", 0, "2024-03-08 08:00:00")
        assert check_completeness(con, D, TOPICS).complete
    finally:
        con.close()


def test_business_day_of_a_run() -> None:
    assert business_day_of(datetime(2024, 3, 8, 8, 5)) == D  # the 08:05 run builds the day that just ended
    assert business_day_of(datetime(2024, 3, 8, 7, 59)) == date(2024, 3, 7)
    assert business_day_of(datetime(2024, 3, 9, 0, 0)) == D


NOW = datetime(2024, 3, 10, 12)
FIRST = datetime(2024, 1, 31, 9, 30)  # the lake's first option quote


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("2024-02-30", "is not a date"),
        ("yesterday", "is not a date"),
        ("2024-3-1", "is not a date"),
        ("20240301", "is not a date"),
        ("2024-03-11", "is in the future"),
        # the quotes begin after the first partition's 08:00: that day's chain would be empty (the date
        # alone, the first partition's, was accepted)
        (
            "2024-01-31",
            "before the lake's first data: its snapshot 2024-01-31 08:00 UTC precedes the first "
            "option quote \\(2024-01-31 09:30:00\\)",
        ),
        ("2024-01-30", "before the lake's first data"),
    ],
)
def test_as_of_date_validation_errors(raw: str, message: str) -> None:
    with pytest.raises(AsOfDateError, match=message):
        resolve_as_of_date(raw, default=D, now=NOW, first_quote=FIRST)


def test_as_of_date_accepts_and_defaults() -> None:
    assert resolve_as_of_date("", default=D, now=NOW, first_quote=FIRST) == D
    assert resolve_as_of_date(None, default=D, now=NOW, first_quote=FIRST) == D
    assert resolve_as_of_date("2024-02-01", default=D, now=NOW, first_quote=FIRST) == date(2024, 2, 1)
    assert resolve_as_of_date(" 2024-03-10 ", default=D, now=NOW, first_quote=FIRST) == date(2024, 3, 10)
    with pytest.raises(AsOfDateError, match="in the future"):  # D 08:00 not reached yet
        resolve_as_of_date("2024-03-10", default=D, now=datetime(2024, 3, 10, 7, 59), first_quote=FIRST)
    with pytest.raises(AsOfDateError, match="no option quotes"):
        resolve_as_of_date("2024-03-08", default=D, now=NOW, first_quote=None)


def test_a_scheduled_gate_waits_for_the_first_drains_and_an_asked_date_does_not(lake_settings) -> None:
    from derivlake.lake.catalog import LakeMissing, _attach, _prepare_sqlite_catalog
    from derivlake.reports.completeness import poke_gate

    run_ts = datetime(2024, 3, 8, 8, 5)

    def poke(raw: str | None, waited_s: float = 0.0) -> tuple[bool, date]:
        return poke_gate(
            raw, run_ts, waited_s, settings=lake_settings, gate_settings=ChainGateSettings(timeout_s=60)
        )

    # no lake at all; then a catalog file the first drain created but has not initialised yet
    for _stage in ("no catalog", "bare catalog"):
        assert poke(None) == (False, D)
        with pytest.raises(LakeMissing, match="run a drain first"):
            poke("2024-03-08")
        _prepare_sqlite_catalog(lake_settings.sqlite_catalog_path)
    with pytest.raises(GateTimeout, match=r"deribit\.ticker ingested up to nothing yet"):
        poke(None, waited_s=60)
    # a catalog the first drain attached but has not created the tables in yet (the demo's first
    # chain run met it: "Table with name market.options_ticker does not exist")
    _attach(lake_settings, read_only=False).close()
    assert poke(None) == (False, D)
    with pytest.raises(AsOfDateError, match="no option quotes"):
        poke("2024-03-08")
    open_lake(lake_settings).close()  # a lake without option quotes yet
    assert poke(None) == (False, D)
    with pytest.raises(AsOfDateError, match="no option quotes"):
        poke("2024-03-08")
