"""`eod_margin`: the DAG's shape, and dag.test() end to end against a prepared tmp lake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
from tests.dags import dag_support
from tests.integration.test_chain_build import D
from tests.integration.test_margin_build import seed_margin_day

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "eod_margin.py"


def load_dag():
    return dag_support.load_dag(DAG_FILE.name, "eod_margin")


@pytest.fixture
def lake(airflow_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LakeSettings:
    monkeypatch.setenv("DERIVLAKE_HOME", str(tmp_path / "home"))
    settings = LakeSettings.from_env()
    con = open_lake(settings)
    try:
        seed_margin_day(con)
    finally:
        con.close()
    return settings


def test_dag_shape(airflow_db) -> None:
    dag = load_dag()
    assert dag.catchup is False and dag.max_active_runs == 1 and dag.doc_md
    assert [a.uri for a in dag.timetable.asset_condition.objects] == ["lake://reports/options_chain"]
    build = dag.get_task("build")
    assert build.retries == 2 and build.execution_timeout is not None and build.owner == "derivlake"
    assert [o.uri for o in build.outlets] == ["lake://reports/margin"]
    # the lineage the Assets view shows: every lake table the margin SQL reads (index_prices and
    # instruments were missing)
    sql = ROOT / "include" / "derivlake" / "reports" / "sql"
    text = "".join(
        (sql / f).read_text() for f in ("margin_positions.sql", "margin_cash.sql", "instrument_spec.sql")
    )
    read = {f"lake://{schema}/{table}" for schema, table in re.findall(r"\b(market|desk)\.(\w+)", text)}
    assert {i.uri for i in build.inlets} == read | {"lake://reports/options_chain"}
    assert "as_of_date" in dag.params
    assert len(DAG_FILE.read_text().splitlines()) <= 70, "the DAG file stays thin"


def test_dag_test_builds_the_margin_report(lake: LakeSettings) -> None:
    run = load_dag().test(run_conf={"as_of_date": D.isoformat()})
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]
    con = open_lake(lake, read_only=True)
    try:
        n = con.execute("SELECT count(*) FROM reports.margin_accounts WHERE as_of_date = ?", [D]).fetchone()[
            0
        ]
    finally:
        con.close()
    assert n == 9  # 3 accounts x 3 models
    extra = dag_support.asset_extras("lake://reports/margin")[-1]
    assert extra["as_of_date"] == "2024-03-08" and extra["accounts"] == 3 and extra["positions"] == 7
    assert extra["unpriced_positions"] == 1 and extra["margin_calls"] == 0
    folder = lake.reports_dir / "margin" / D.isoformat()
    assert extra["files"] == [
        str(folder / f"margin_accounts_{D}.csv"), str(folder / f"margin_positions_{D}.csv"),
        str(folder / f"margin_{D}.html"),
    ]  # fmt: skip


def test_a_missing_chain_fails_at_once_naming_it(lake: LakeSettings, caplog, capfd) -> None:
    run = load_dag().test(run_conf={"as_of_date": "2024-03-09"})
    assert run.state == "failed"
    states = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    assert states["build"] == ("failed", 1), "no retry: a retry cannot build the chain"
    out, err = capfd.readouterr()
    assert "the options chain of 2024-03-09 is not in the lake" in caplog.text + out + err


def test_the_chain_event_picks_the_day() -> None:
    from types import SimpleNamespace

    from derivlake.reports.event_task import trigger_day

    chain = object()
    events = [
        SimpleNamespace(extra={"as_of_date": "2024-03-07"}),
        SimpleNamespace(extra={"as_of_date": "2024-03-08"}),
    ]
    assert trigger_day({"params": {}, "triggering_asset_events": {chain: events}}, chain) == "2024-03-08"
    assert (
        trigger_day(
            {"params": {"as_of_date": "2024-03-01"}, "triggering_asset_events": {chain: events}}, chain
        )
        == "2024-03-01"
    )
    assert trigger_day({"params": {"as_of_date": None}}, chain) is None
