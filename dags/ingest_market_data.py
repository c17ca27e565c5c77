"""
### ingest_market_data
Every 5 minutes, one mapped task per Kafka topic drains it into the DuckLake lake: a bounded,
exactly-once drain (rows, quarantine, offsets and the run record in one lake transaction).
Bad messages land in `ops.quarantine` with their reason; the task fails only when their share
passes `DERIVLAKE_QUARANTINE_MAX_RATIO`. Kafka settings come from the `kafka_default` connection
(extra = librdkafka config). Set `reset_offsets` only to accept an out-of-range stored offset.
"""

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task

from derivlake.config import TOPIC_KINDS
from derivlake.ingest.airflow_task import TABLE_ASSETS, asset_uri

OUTLETS = [Asset(asset_uri(t)) for tables in TABLE_ASSETS.values() for t in tables]


@dag(
    schedule=timedelta(minutes=5),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["derivlake", "ingest"],
    default_args={
        "owner": "derivlake",
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(minutes=20),
    },
    params={"reset_offsets": Param(None, type=["null", "string"], enum=[None, "earliest", "latest"])},
)
def ingest_market_data():
    @task(pool="kafka_drains", outlets=OUTLETS, map_index_template="{{ topic_kind }}")
    def drain(kind: str, **context) -> dict:
        from derivlake.ingest.airflow_task import run_drain_task

        context["topic_kind"] = kind  # labels the mapped task in the UI
        return run_drain_task(kind, context)

    drain.expand(kind=[kind for kind, _key, _busy in TOPIC_KINDS])


ingest_market_data()
