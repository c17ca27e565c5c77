"""The drain as an Airflow task: Kafka settings from the `kafka_default` connection, counts as
asset events. Airflow is imported inside the functions so the package imports without it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from derivlake.config import KafkaSettings, Settings

log = logging.getLogger(__name__)

TABLE_ASSETS = {
    "deribit.instruments": ("market.instruments",),
    "deribit.ticker": ("market.options_ticker", "market.derivative_ticker"),
    "deribit.trades": ("market.trades",),
    "deribit.book": ("market.book_l2",),
    "deribit.index": ("market.index_prices",),
    "desk.fills": ("desk.fills",),
    "desk.transfers": ("desk.transfers",),
}


def asset_uri(table: str) -> str:
    schema, name = table.split(".")
    return f"lake://{schema}/{name}"


def _host_port(host: str | None, port: int | None) -> str | None:
    """`host:port`, or the host alone when the connection has no port: librdkafka then uses Kafka's
    9092 itself, and a host field that already lists `b1:9093,b2:9093` stays valid (no `:None`)."""
    if not host:
        return None
    return f"{host}:{port}" if port else host


def kafka_from_connection(
    base: KafkaSettings | None = None,
    conn_id: str = "kafka_default",
    lookup: Callable[[str], Any] | None = None,
) -> KafkaSettings:
    """librdkafka settings from the connection's extra (SASL/SSL included); the environment otherwise.
    `lookup` finds the connection (default: the Task SDK's, as in a task; the API server, which
    runs no task, passes the metadata DB's)."""
    if lookup is None:
        from airflow.sdk import Connection

        lookup = Connection.get
    base = base or KafkaSettings.from_env()
    try:
        conn = lookup(conn_id)
    except Exception as exc:  # AirflowNotFoundException and friends
        log.info(
            "no %s connection (%s): using KAFKA_BOOTSTRAP_SERVERS=%s", conn_id, exc, base.bootstrap_servers
        )
        return base
    extra = conn.extra_dejson if isinstance(conn.extra_dejson, dict) else json.loads(conn.extra or "{}")
    extra = {str(k): str(v) for k, v in extra.items()}
    bootstrap = extra.pop("bootstrap.servers", None) or _host_port(conn.host, conn.port)
    return replace(base, bootstrap_servers=bootstrap or base.bootstrap_servers, extra=extra)


def run_drain_task(kind: str, context: dict[str, Any]) -> dict[str, object]:
    """Drain one topic; attach its counts to the asset events of the tables it feeds."""
    from airflow.sdk import Asset
    from airflow.sdk.exceptions import AirflowFailException

    from derivlake.dag_params import reject_unknown_conf
    from derivlake.ingest.drain import QuarantineThresholdExceeded, drain_topic

    reject_unknown_conf(context)
    settings = Settings.from_env()
    kafka = kafka_from_connection(settings.kafka)
    params = context.get("params") or {}
    reset = params.get("reset_offsets") or None
    run_id = f"{context['run_id']}:{kind}"
    try:
        result = drain_topic(kafka, settings.lake, kind, settings.drain, reset, run_id=run_id)
    except QuarantineThresholdExceeded as exc:
        raise AirflowFailException(str(exc)) from None  # committed already: a retry would hide it
    meta = result.as_metadata()
    for table in TABLE_ASSETS[kind]:
        context["outlet_events"][Asset(asset_uri(table))].extra = {
            **{k: v for k, v in meta.items() if k != "rows"},
            "table": table,
            "rows": result.rows.get(table, 0),
        }
    return meta
