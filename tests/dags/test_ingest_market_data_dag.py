"""`dag.test()` of ingest_market_data against the embedded broker: real Airflow, real lake."""

from __future__ import annotations

import json

from derivlake.config import KafkaSettings, LakeSettings
from derivlake.lake.catalog import open_lake
from tests.integration.drain_support import produce, produce_tickers


def test_ingest_dag_drains_every_topic_and_its_asset_events_carry_the_counts(
    dagbag, kafka: KafkaSettings, lake_in_env: LakeSettings, monkeypatch
) -> None:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    prefix = kafka.topic("deribit.ticker").name.removesuffix("deribit.ticker")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("DERIVLAKE_TOPIC_PREFIX", prefix)
    lake_settings = lake_in_env  # SQLite, and Postgres as in the compose deployment
    monkeypatch.setenv("DERIVLAKE_DRAIN_IDLE_TIMEOUT_S", "5")
    produce_tickers(kafka, 0, 120)
    produce(kafka, "deribit.ticker", [b"{broken"])
    index = {"index_name": "btc_usd", "price": 95000.5, "timestamp": 1_735_000_000_000}
    produce(kafka, "deribit.index", [json.dumps(index).encode()], [b"btc_usd"])

    dag = dagbag.get_dag("ingest_market_data")
    run = dag.test()
    assert run.state == DagRunState.SUCCESS
    with create_session() as session:
        events = {
            e.asset.uri: e.extra
            for e in session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id).all()
        }
    assert events["lake://market/options_ticker"]["rows"] == 120
    assert events["lake://market/options_ticker"]["quarantined"] == 1
    assert events["lake://market/options_ticker"]["messages"] == 121
    assert events["lake://market/index_prices"]["rows"] == 1
    assert events["lake://market/derivative_ticker"]["rows"] == 0
    assert len(events) == 8  # one per lake table fed by the seven topics
    con = open_lake(lake_settings, read_only=True)
    assert con.execute("SELECT count(*) FROM market.options_ticker").fetchone()[0] == 120


def test_kafka_default_with_a_host_and_no_port_gives_the_host_alone(airflow_db, monkeypatch) -> None:
    """A `kafka_default` connection holding only a host (no port, no bootstrap.servers in its extra)
    bootstraps from that host, where librdkafka uses Kafka's default port 9092 (was `broker1:None`)."""
    from derivlake.ingest.airflow_task import kafka_from_connection

    conn = {"conn_type": "kafka", "host": "broker1", "extra": {"security.protocol": "SASL_SSL"}}
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps(conn))
    settings = kafka_from_connection(KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    assert settings.bootstrap_servers == "broker1"
    assert settings.extra == {"security.protocol": "SASL_SSL"}

    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps({**conn, "port": 9093}))
    assert kafka_from_connection(KafkaSettings()).bootstrap_servers == "broker1:9093"
