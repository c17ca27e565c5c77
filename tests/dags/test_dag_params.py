"""What an operator types into a DAG's trigger form: a misspelled param fails the run at once, naming it,
before anything is read or written (Airflow accepts and ignores a conf key no param declares), and a
text param left empty is accepted as the form sends it (null). Real Airflow (dag.test), real lake, and
for the drains the embedded broker."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from derivlake.config import KafkaSettings, LakeSettings
from derivlake.lake.catalog import open_lake
from tests.dags import dag_support
from tests.integration.drain_support import produce_tickers


def _snapshot(settings: LakeSettings) -> int:
    con = open_lake(settings, read_only=True)
    try:
        return con.execute("SELECT max(snapshot_id) FROM ducklake_snapshots('lake')").fetchone()[0]
    finally:
        con.close()


def _states(run) -> dict[str, tuple[str, int]]:
    return {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}


@pytest.fixture
def lake(airflow_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LakeSettings:
    monkeypatch.setenv("DERIVLAKE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DERIVLAKE_CHAIN_GATE_POKE_S", "1")
    monkeypatch.setenv("DERIVLAKE_CHAIN_GATE_TIMEOUT_S", "0")  # without the check the gate gives up at once
    settings = LakeSettings.from_env()
    open_lake(settings).close()
    return settings


@pytest.mark.parametrize(
    ("file_name", "dag_id", "conf", "first_task", "declared"),
    [
        ("eod_options_chain.py", "eod_options_chain", {"as_of_dat": "2024-03-08"}, "lake_complete", "as_of_date"),
        ("eod_margin.py", "eod_margin", {"asof_date": "2024-03-08"}, "build", "as_of_date"),
        ("regulatory_exports.py", "regulatory_exports", {"date": "2024-03-08"}, "export", "as_of_date"),
        ("maintain_lake.py", "maintain_lake", {"retention_day": 1}, "compact_and_measure",
         "orphan_grace_hours, retention_days, target_file_size_mb"),
        # the harmful one: a dry run asked for as `dry_rum` replayed for real
        ("replay_quarantine.py", "replay_quarantine", {"dry_rum": True}, "topics", "dry_run, reason, topics"),
    ],
)  # fmt: skip
def test_a_misspelled_param_fails_the_run_at_once_naming_it(
    lake: LakeSettings, caplog, capfd, file_name, dag_id, conf, first_task, declared
) -> None:
    before = _snapshot(lake)
    run = dag_support.load_dag(file_name, dag_id).test(run_conf=conf)
    logs = caplog.text + "".join(capfd.readouterr())
    assert run.state == "failed"
    assert _states(run)[first_task] == ("failed", 1), "a misspelled param fails at once, without retries"
    (key,) = conf
    assert f"unknown param {key} in the run's conf: {dag_id} takes {declared}; nothing was done" in logs
    assert _snapshot(lake) == before, "the run wrote to the lake"


def test_a_misspelled_reset_fails_every_drain_and_the_next_run_drains_it_all(
    airflow_db, kafka: KafkaSettings, lake: LakeSettings, monkeypatch, caplog, capfd
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv(
        "DERIVLAKE_TOPIC_PREFIX", kafka.topic("deribit.ticker").name.removesuffix("deribit.ticker")
    )
    monkeypatch.setenv("DERIVLAKE_DRAIN_IDLE_TIMEOUT_S", "5")
    produce_tickers(kafka, 0, 30)
    dag = dag_support.load_dag("ingest_market_data.py", "ingest_market_data")

    run = dag.test(run_conf={"reset_offset": "earliest"})
    logs = caplog.text + "".join(capfd.readouterr())
    assert run.state == "failed"
    assert set(_states(run).values()) == {("failed", 1)}, _states(run)
    assert "unknown param reset_offset in the run's conf: ingest_market_data takes reset_offsets" in logs
    con = open_lake(lake, read_only=True)
    assert con.execute("SELECT count(*) FROM ops.kafka_offsets").fetchone() == (0,), "no drain may start"
    con.close()

    assert dag.test(run_conf={"reset_offsets": None}).state == "success"
    con = open_lake(lake, read_only=True)
    assert con.execute("SELECT count(*) FROM market.options_ticker").fetchone() == (30,)
    con.close()


def test_an_empty_reason_is_taken_as_the_trigger_form_sends_it(airflow_db) -> None:
    """The form sends an emptied text field as null; a `reason` typed `string` refused it (and the form
    disabled Trigger until something was typed), though empty means every reason."""
    dag = dag_support.load_dag("replay_quarantine.py", "replay_quarantine")
    params = copy.deepcopy(dag.params)
    params.update({"reason": None})  # as the API server merges a trigger's conf
    assert params.validate()["reason"] is None
