"""The completeness gate and the as_of_date validation of the end-of-day chain."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
from derivlake.reports.completeness import (
    AsOfDateError,
    Completeness,
    GateTimeout,
    business_day_of,
    check_completeness,
    first_quote_time,
    gate,
    resolve_as_of_date,
    topic_kind,
)

D = date(2024, 3, 8)
SNAP = datetime(2024, 3, 8, 8)


def test_topic_kind_matches_on_suffix() -> None:
    assert topic_kind("deribit.ticker") == "deribit.ticker"
    assert topic_kind("t1a2b3c4d.deribit.trades") == "deribit.trades"
    assert topic_kind("prod-deribit.ticker") == "deribit.ticker"
    assert topic_kind("p.deribit.index") == "deribit.index"
    assert topic_kind("deribit.book") is None
    assert topic_kind("deribit.instruments") is None


def _status(ticker: datetime | None, trades: datetime | None, index: datetime | None = SNAP) -> Completeness:
    return Completeness(D, SNAP, {"deribit.ticker": ticker, "deribit.trades": trades, "deribit.index": index})


def test_complete_only_when_every_topic_passed_the_snapshot() -> None:
    assert _status(SNAP, datetime(2024, 3, 8, 9)).complete
    lagging = _status(datetime(2024, 3, 8, 9), datetime(2024, 3, 8, 7, 59, 59))
    assert not lagging.complete
    assert list(lagging.lagging) == ["deribit.trades"]
    assert "deribit.trades ingested up to 2024-03-08T07:59:59" in lagging.describe()
    assert "deribit.ticker ingested" not in lagging.describe()
    never = _status(None, SNAP)
    assert "deribit.ticker ingested up to nothing yet" in never.describe()


def test_gate_waits_then_times_out_naming_the_lagging_topic() -> None:
    ok = _status(SNAP, SNAP)
    late = _status(SNAP, datetime(2024, 3, 8, 7, 30))
    assert gate(ok, waited_s=10_000, timeout_s=60) is True
    assert gate(late, waited_s=59, timeout_s=60) is False
    with pytest.raises(GateTimeout, match=r"deribit\.trades ingested up to 2024-03-08T07:30:00"):
        gate(late, waited_s=60, timeout_s=60)


def test_check_completeness_reads_ingest_runs(lake_settings: LakeSettings) -> None:
    con = open_lake(lake_settings)
    try:
        assert check_completeness(con, D).lagging == {
            "deribit.ticker": None, "deribit.trades": None, "deribit.index": None
        }  # fmt: skip
        con.execute(
            "INSERT INTO ops.ingest_runs (run_id, topic, max_event_ts) VALUES "
            "('r1', 'p.deribit.ticker', TIMESTAMP '2024-03-08 07:00:00'), "
            "('r2', 'p.deribit.ticker', TIMESTAMP '2024-03-08 08:00:01'), "
            "('r3', 'p.deribit.trades', TIMESTAMP '2024-03-08 07:59:00'), "
            "('r4', 'p.deribit.book', TIMESTAMP '2024-03-09 00:00:00'), "
            "('r5', 'p.deribit.index', TIMESTAMP '2024-03-08 09:00:00')"
        )
        status = check_completeness(con, D)
        assert status.watermarks["deribit.ticker"] == datetime(2024, 3, 8, 8, 0, 1)
        assert list(status.lagging) == ["deribit.trades"]
        con.execute(
            "INSERT INTO ops.ingest_runs (run_id, topic, max_event_ts) VALUES "
            "('r6', 'p.deribit.trades', TIMESTAMP '2024-03-08 08:00:00')"
        )
        assert check_completeness(con, D).complete
        assert not check_completeness(con, date(2024, 3, 9)).complete
        assert first_quote_time(con) is None
    finally:
        con.close()


def test_the_gate_waits_for_the_index_of_the_delivery_price(lake_settings: LakeSettings) -> None:
    """Series expiring at D 08:00 settle at the index TWAP 07:30-08:00: quotes and trades past 08:00 are
    not enough while the index topic has not reached 08:00."""
    con = open_lake(lake_settings)
    try:
        con.execute(
            "INSERT INTO ops.ingest_runs (run_id, topic, max_event_ts) VALUES "
            "('r1', 'p.deribit.ticker', TIMESTAMP '2024-03-08 08:10:00'), "
            "('r2', 'p.deribit.trades', TIMESTAMP '2024-03-08 08:10:00'), "
            "('r3', 'p.deribit.index', TIMESTAMP '2024-03-08 07:45:00')"
        )
        status = check_completeness(con, D)
        assert list(status.lagging) == ["deribit.index"]
        with pytest.raises(GateTimeout, match=r"deribit\.index ingested up to 2024-03-08T07:45:00"):
            gate(status, waited_s=60, timeout_s=60)
        con.execute(
            "INSERT INTO ops.ingest_runs (run_id, topic, max_event_ts) VALUES "
            "('r4', 'p.deribit.index', TIMESTAMP '2024-03-08 08:00:00')"
        )
        assert check_completeness(con, D).complete
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
        return poke_gate(raw, run_ts, waited_s, settings=lake_settings, timeout_s=60)

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
