"""`regulatory_exports`: the DAG's shape, and dag.test() end to end against a prepared tmp lake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from derivlake.config import LakeSettings
from derivlake.regulatory.settings import demo_lei
from tests.dags import dag_support
from tests.integration.test_chain_build import D
from tests.integration.test_regulatory_exports import seed_reportable_day

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "regulatory_exports.py"


def load_dag():
    return dag_support.load_dag(DAG_FILE.name, "regulatory_exports")


@pytest.fixture
def lake(airflow_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LakeSettings:
    monkeypatch.setenv("DERIVLAKE_HOME", str(tmp_path / "home"))
    return seed_reportable_day(LakeSettings.from_env())


def test_dag_shape(airflow_db) -> None:
    dag = load_dag()
    assert dag.catchup is False and dag.max_active_runs == 1 and dag.doc_md
    assert [a.uri for a in dag.timetable.asset_condition.objects] == ["lake://reports/margin"]
    export = dag.get_task("export")
    assert export.retries == 2 and export.owner == "derivlake"
    assert [o.uri for o in export.outlets] == ["lake://exports/regulatory"]
    # the lineage the Assets view shows: the margin report and every lake table the files' SQL reads
    sql = DAG_FILE.parents[1] / "include" / "derivlake" / "regulatory" / "sql"
    text = "".join(f.read_text() for f in sql.glob("*.sql"))
    text += (
        DAG_FILE.parents[1] / "include" / "derivlake" / "reports" / "sql" / "instrument_spec.sql"
    ).read_text()
    read = {f"lake://{schema}/{table}" for schema, table in re.findall(r"\b(market|desk)\.(\w+)", text)}
    assert {i.uri for i in export.inlets} == read | {"lake://reports/margin"}
    assert "as_of_date" in dag.params
    assert len(DAG_FILE.read_text().splitlines()) <= 70, "the DAG file stays thin"


def test_dag_test_files_the_day(lake: LakeSettings) -> None:
    run = load_dag().test(run_conf={"as_of_date": D.isoformat()})
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]
    folder = lake.exports_dir / D.isoformat()
    extra = dag_support.asset_extras("lake://exports/regulatory")[-1]
    assert extra["as_of_date"] == "2024-03-08" and extra["filed_now"] == 2
    assert [f["file"] for f in extra["files"]] == [
        str(folder / f"RTS22_{demo_lei()}_20240308_001.xml"), str(folder / "CFTC17_DLK_20240308_001.txt")
    ]  # fmt: skip
    assert [f["records"] for f in extra["files"]] == [9, 4]


def test_a_bad_regulatory_config_fails_at_once_naming_it(lake, monkeypatch, tmp_path, caplog, capfd) -> None:
    config = tmp_path / "regulatory.json"
    config.write_text('{"entity_lei": "5493001KJTIIGC8Y1R13"}')  # a check digit off
    monkeypatch.setenv("DERIVLAKE_REGULATORY_CONFIG", str(config))
    run = load_dag().test(run_conf={"as_of_date": D.isoformat()})
    states = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    assert run.state == "failed" and states["export"] == ("failed", 1)
    out, err = capfd.readouterr()
    assert "entity_lei='5493001KJTIIGC8Y1R13' is not a valid LEI" in caplog.text + out + err
