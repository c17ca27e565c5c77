"""`eod_options_chain`: the DAG's shape, and dag.test() end to end against a prepared tmp lake."""

from __future__ import annotations

from pathlib import Path

import pytest

from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
from tests.dags import dag_support
from tests.integration.test_chain_build import D, seed_day

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "eod_options_chain.py"


def load_dag():
    """Parsed afresh, so the gate's env settings of the test apply."""
    return dag_support.load_dag(DAG_FILE.name, "eod_options_chain")


@pytest.fixture
def lake(airflow_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LakeSettings:
    monkeypatch.setenv("DERIVLAKE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DERIVLAKE_CHAIN_GATE_POKE_S", "1")
    settings = LakeSettings.from_env()
    con = open_lake(settings)
    try:
        seed_day(con)
    finally:
        con.close()
    return settings


def _ingested(settings: LakeSettings, trades_until: str, index_until: str = "2024-03-08 08:00:01") -> None:
    """Each topic's one partition drained up to a newest event (rows outside the chain: a perpetual's
    ticker and trade, past 08:00 or at its edge, and an index tick)."""
    con = open_lake(settings)
    try:
        con.executemany(
            "INSERT INTO ops.kafka_offsets VALUES (?, 0, 10, now()::TIMESTAMP, 'test')",
            [["deribit.ticker"], ["deribit.trades"], ["deribit.index"]],
        )
        for table, name, until, topic in (
            ("market.derivative_ticker", "symbol", "2024-03-08 08:00:03", "deribit.ticker"),
            ("market.trades", "symbol", trades_until, "deribit.trades"),
            ("market.index_prices", "index_name", index_until, "deribit.index"),
        ):
            value = "'btc_usd'" if name == "index_name" else "'BTC-PERPETUAL'"
            con.execute(
                f"INSERT INTO {table} ({name}, timestamp, date, kafka_topic, kafka_partition, kafka_offset) "
                f"VALUES ({value}, ?::TIMESTAMP, ?::TIMESTAMP::DATE, ?, 0, 9)",
                [until, until, topic],
            )
    finally:
        con.close()


def _logs(caplog: pytest.LogCaptureFixture, capfd) -> str:
    """Task logs: dag.test() writes them through structlog to stdout, some also reach logging."""
    out, err = capfd.readouterr()
    return caplog.text + out + err


def test_dag_shape(airflow_db) -> None:
    dag = load_dag()
    assert dag.dag_id == "eod_options_chain"
    assert dag.catchup is False and dag.max_active_runs == 1 and dag.doc_md
    assert {"derivlake", "eod"} <= set(dag.tags)
    gate, build = dag.get_task("lake_complete"), dag.get_task("build")
    assert gate.mode == "reschedule" and build.upstream_task_ids == {"lake_complete"}
    assert gate.owner == "derivlake" and build.retries == 2 and build.execution_timeout is not None
    assert [o.uri for o in build.outlets] == ["lake://reports/options_chain"]
    assert {i.uri for i in build.inlets} == {
        "lake://market/options_ticker", "lake://market/trades", "lake://market/index_prices"
    }  # fmt: skip
    assert "as_of_date" in dag.params
    assert len(DAG_FILE.read_text().splitlines()) <= 70, "the DAG file stays thin"


def test_a_malformed_gate_setting_is_an_import_error_that_names_it(airflow_db, monkeypatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("DERIVLAKE_CHAIN_GATE_POKE_S", "1m")
    errors = DagBag(dag_folder=str(DAG_FILE)).import_errors
    assert "DERIVLAKE_CHAIN_GATE_POKE_S='1m' is not a number" in "".join(errors.values()), errors


def test_dag_test_builds_the_chain(lake: LakeSettings) -> None:
    _ingested(lake, "2024-03-08 08:00:00")
    dag = load_dag()
    run = dag.test(run_conf={"as_of_date": D.isoformat()})
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]
    csv = lake.reports_dir / "chain" / D.isoformat() / f"options_chain_{D}.csv"
    assert csv.exists() and csv.with_suffix(".html").exists()
    con = open_lake(lake, read_only=True)
    try:
        n = con.execute("SELECT count(*) FROM reports.options_chain WHERE as_of_date = ?", [D]).fetchone()[0]
    finally:
        con.close()
    assert n == 31
    extras = dag_support.asset_extras("lake://reports/options_chain")
    assert extras and extras[-1]["as_of_date"] == "2024-03-08" and extras[-1]["series"] == 31
    assert extras[-1]["expiries"] == 4 and extras[-1]["csv"] == str(csv)
    assert extras[-1]["html"] == str(csv.with_suffix(".html"))


@pytest.mark.parametrize(
    ("trades_until", "index_until", "lagging"),
    [
        ("2024-03-08 07:59:00", "2024-03-08 08:00:01", "deribit.trades"),
        # the delivery price of the series expiring at 08:00 is the index TWAP 07:30-08:00
        ("2024-03-08 08:00:00", "2024-03-08 07:59:00", "deribit.index"),
    ],
)
def test_dag_gate_times_out_naming_the_lagging_partition(
    lake: LakeSettings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd,
    trades_until: str,
    index_until: str,
    lagging: str,
) -> None:
    _ingested(lake, trades_until, index_until)
    monkeypatch.setenv("DERIVLAKE_CHAIN_GATE_TIMEOUT_S", "0")
    dag = load_dag()
    run = dag.test(run_conf={"as_of_date": D.isoformat()})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed" and states["lake_complete"] == "failed", states
    assert f"{lagging}[0] ingested up to 2024-03-08T07:59:00" in _logs(caplog, capfd)


def test_dag_rejects_a_future_date(lake: LakeSettings, caplog: pytest.LogCaptureFixture, capfd) -> None:
    _ingested(lake, "2024-03-08 08:00:00")
    run = load_dag().test(run_conf={"as_of_date": "2999-01-01"})
    assert run.state == "failed"
    assert "as_of_date 2999-01-01 is in the future" in _logs(caplog, capfd)
    states = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    assert states["lake_complete"] == ("failed", 1), "a bad date fails at once, without retries"
