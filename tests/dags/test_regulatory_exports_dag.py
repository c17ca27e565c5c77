"""`regulatory_exports`: the DAG's shape, and dag.test() end to end against a prepared tmp lake."""

from __future__ import annotations

from pathlib import Path

import pytest

from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
from derivlake.regulatory.settings import demo_lei
from derivlake.reports.margin import build_margin
from tests.integration.test_chain_build import D
from tests.integration.test_margin_build import seed_margin_day

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "regulatory_exports.py"


def load_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("regulatory_exports")


@pytest.fixture
def lake(airflow_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LakeSettings:
    monkeypatch.setenv("DERIVLAKE_HOME", str(tmp_path / "home"))
    settings = LakeSettings.from_env()
    con = open_lake(settings)
    try:
        seed_margin_day(con)
        con.execute(
            "DELETE FROM desk.fills WHERE account_id = 'acct-c'"
        )  # no instrument spec: not reportable
        build_margin(con, D)
    finally:
        con.close()
    return settings


def test_dag_shape(airflow_db) -> None:
    dag = load_dag()
    assert dag.catchup is False and dag.max_active_runs == 1 and dag.doc_md
    assert [a.uri for a in dag.timetable.asset_condition.objects] == ["lake://reports/margin"]
    export = dag.get_task("export")
    assert export.retries == 2 and export.owner == "derivlake"
    assert [o.uri for o in export.outlets] == ["lake://exports/regulatory"]
    assert "as_of_date" in dag.params
    assert len(DAG_FILE.read_text().splitlines()) <= 70, "the DAG file stays thin"


def test_dag_test_files_the_day(lake: LakeSettings) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    run = load_dag().test(run_conf={"as_of_date": D.isoformat()})
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]
    folder = lake.exports_dir / D.isoformat()
    with create_session() as session:
        extra = session.scalars(
            select(AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == "lake://exports/regulatory")
        ).all()[-1]  # fmt: skip
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
