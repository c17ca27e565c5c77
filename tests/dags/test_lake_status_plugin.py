"""The lake status page as Airflow's API server serves it: the real app with the repo's plugins
folder, the real auth manager, a real broker and lake behind it."""

from __future__ import annotations

import json
import re
from datetime import date

from derivlake.config import DrainSettings, KafkaSettings, LakeSettings
from derivlake.ingest.drain import drain_topic
from derivlake.reports.chain import chain_file
from derivlake.reports.margin import margin_html_file
from tests.conftest import free_port
from tests.integration.drain_support import produce_tickers


def test_the_page_shows_the_lake_to_logged_in_users_only(
    airflow_db, kafka: KafkaSettings, lake_in_env: LakeSettings, monkeypatch
) -> None:
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    produce_tickers(kafka, 0, 120)
    drain_topic(kafka, lake_in_env, "deribit.ticker", DrainSettings(idle_timeout_s=5))
    produce_tickers(kafka, 120, 30)
    topic = kafka.topic("deribit.ticker").name
    monkeypatch.setenv("DERIVLAKE_TOPIC_PREFIX", topic.removesuffix("deribit.ticker"))
    # the brokers come from the kafka_default connection, as the drains': the environment's are dead
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    conn = {"conn_type": "kafka", "extra": {"bootstrap.servers": kafka.bootstrap_servers}}
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps(conn))

    client = TestClient(create_app())
    assert client.get("/lake-status/").status_code == 401  # plugin routes are not open by default

    plugins = client.get("/api/v2/plugins", headers=_auth()).json()["plugins"]
    (ours,) = [p for p in plugins if p["name"] == "derivlake_lake_status"]
    assert ours["external_views"][0]["url_route"] == "lake-status"

    page = client.get("/lake-status/", cookies={"_token": _token(get_auth_manager, SimpleAuthManagerUser)})
    assert page.status_code == 200, page.text
    assert topic in page.text and "Lake status" not in page.text  # the page, not the UI's shell
    doc = client.get("/lake-status/status.json", headers=_auth()).json()
    (t,) = [t for t in doc["topics"] if t["topic"] == topic]
    assert (t["messages_24h"], t["rows_24h"], t["lag"]) == (120, 120, 30)
    assert doc["lag_error"] is None and doc["chains"] == doc["margins"] == doc["filings"] == []  # none yet

    # a chain's HTML report, as eod_options_chain leaves it, is served beside the page
    report = chain_file(lake_in_env.reports_dir, date(2026, 12, 2), "html")
    report.parent.mkdir(parents=True)
    report.write_text("<html>the chain of 2026-12-02</html>")
    assert client.get("/lake-status/chain/2026-12-02", headers=_auth()).text == report.read_text()
    assert client.get("/lake-status/chain/2026-12-01", headers=_auth()).status_code == 404
    assert client.get("/lake-status/chain/..%2F..%2Fetc", headers=_auth()).status_code in (404, 422)
    assert client.get("/lake-status/chain/2026-12-02").status_code == 401
    margin = margin_html_file(lake_in_env.reports_dir, date(2026, 12, 2))  # and eod_margin's
    margin.parent.mkdir(parents=True)
    margin.write_text("<html>the margin of 2026-12-02</html>")
    assert client.get("/lake-status/margin/2026-12-02", headers=_auth()).text == margin.read_text()
    assert client.get("/lake-status/margin/2026-12-01", headers=_auth()).status_code == 404
    assert client.get("/lake-status/margin/2026-12-02").status_code == 401


def test_the_page_says_when_there_is_no_lake(airflow_db, tmp_path, monkeypatch) -> None:
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    monkeypatch.setenv("DERIVLAKE_HOME", str(tmp_path / "nowhere"))
    monkeypatch.delenv("DERIVLAKE_CATALOG", raising=False)
    client = TestClient(create_app())
    page = client.get("/lake-status/", headers=_auth())
    assert page.status_code == 503
    assert "No lake yet" in page.text and "Traceback" not in page.text


def test_an_empty_lake_gives_a_page_with_dashes_where_nothing_was_measured(
    airflow_db, tmp_path, monkeypatch
) -> None:
    """A lake no drain has committed to yet (a fresh deployment): every cell says something, no blank
    reads as a zero; the brokers are down too (lag unknown), and the page still shows."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    from derivlake.lake.catalog import open_lake

    monkeypatch.setenv("DERIVLAKE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DERIVLAKE_CATALOG", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.delenv("AIRFLOW_CONN_KAFKA_DEFAULT", raising=False)
    open_lake(LakeSettings.from_env()).close()
    page = TestClient(create_app()).get("/lake-status/", headers=_auth())
    assert page.status_code == 200, page.text
    cells = {
        row[0]: row[1:]
        for row in (
            re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S) for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", page.text, re.S)
        )
        if row
    }  # fmt: skip
    assert cells["deribit.ticker"][1:4] == ["never", "-", "unknown"], cells["deribit.ticker"]
    assert cells["market.options_ticker"] == ["0", "0 B", "-", "-", "-", "not yet"]
    assert cells["ops.ingest_runs"] == ["0", "0 B", "-", "-", "-", "not measured"]
    assert "No chain built yet" in page.text and "Lag unknown: brokers 127.0.0.1:" in page.text


def _token(get_auth_manager, user_class) -> str:
    return get_auth_manager().generate_jwt(user_class(username="admin", role="admin"))


def _auth() -> dict[str, str]:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return {"Authorization": f"Bearer {_token(get_auth_manager, SimpleAuthManagerUser)}"}
