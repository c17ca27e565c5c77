"""`dag.test()` of replay_quarantine: a new listing's quarantined tickers move into the lake."""

from __future__ import annotations

import json

import pytest

from derivlake.config import DrainSettings, KafkaSettings, LakeSettings
from derivlake.ingest.drain import drain_topic
from derivlake.lake.catalog import open_lake
from tests.integration.drain_support import produce, ticker_payload


def test_replay_dag_releases_a_new_currency_and_names_its_tasks(
    dagbag, kafka: KafkaSettings, lake_in_env: LakeSettings, monkeypatch
) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    monkeypatch.setenv(
        "DERIVLAKE_TOPIC_PREFIX", kafka.topic("deribit.ticker").name.removesuffix("deribit.ticker")
    )
    tickers = [ticker_payload(i, "HYPE-27DEC24-30-C" if i % 2 else "BTC-27DEC24-100000-C") for i in range(20)]
    produce(kafka, "deribit.ticker", [json.dumps(t).encode() for t in tickers])
    drained = drain_topic(
        kafka, lake_in_env, "deribit.ticker", DrainSettings(idle_timeout_s=5, quarantine_max_ratio=1)
    )
    assert drained.quarantined == 10

    dag = dagbag.get_dag("replay_quarantine")
    conf = {"topics": ["deribit.ticker", "deribit.index"]}
    dry = dag.test(run_conf={**conf, "dry_run": True})  # without the currency: nothing to release
    assert dry.state == DagRunState.SUCCESS
    monkeypatch.setenv("DERIVLAKE_EXTRA_CURRENCIES", "HYPE")
    run = dag.test(run_conf={**conf, "dry_run": False})  # (dag.test keeps the last run's conf)
    assert run.state == DagRunState.SUCCESS
    with create_session() as session:
        tis = (
            session.query(TaskInstance)
            .filter(TaskInstance.run_id == run.run_id, TaskInstance.task_id == "replay")
            .all()
        )
        results = {
            ti.rendered_map_index: ti.xcom_pull(task_ids="replay", map_indexes=ti.map_index) for ti in tis
        }
    assert set(results) == {"deribit.ticker", "deribit.index"}
    ticker = results["deribit.ticker"]
    assert (ticker["examined"], ticker["released"], ticker["still_quarantined"]) == (10, 10, 0)
    assert ticker["rows"] == {"market.options_ticker": 10}
    assert results["deribit.index"]["examined"] == 0
    con = open_lake(lake_in_env, read_only=True)
    assert con.execute("SELECT count(*) FROM market.options_ticker").fetchone() == (20,)
    assert con.execute("SELECT count(*) FROM ops.quarantine").fetchone() == (0,)


def test_a_topic_that_is_not_one_is_refused_before_the_run(dagbag, airflow_db) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match=r"deribit\.tickers"):
        dagbag.get_dag("replay_quarantine").test(run_conf={"topics": ["deribit.tickers"]})
