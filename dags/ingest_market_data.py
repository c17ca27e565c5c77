"""
### ingest_market_data
Every 5 minutes, one drain task per Kafka topic moves it into the DuckLake lake: a bounded,
exactly-once drain (rows, quarantine, offsets and the run record in one lake transaction).
Bad messages land in `ops.quarantine` with their reason; the task fails only when their share
passes `DERIVLAKE_QUARANTINE_MAX_RATIO`. Kafka settings come from the `kafka_default` connection
(extra = librdkafka config). Set `reset_offsets` only to accept an out-of-range stored offset.
Each topic's task emits asset events for the tables it feeds (rows, bytes, lag, quarantined).
"""

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, task

from derivlake.ingest.airflow_task import TABLE_ASSETS, asset_uri


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
    params={
        "reset_offsets": Param(
            None,
            type=["null", "string"],
            enum=[None, "earliest", "latest"],
            values_display={"null": "no reset (normal run)", "earliest": "earliest", "latest": "latest"},
            description="only after a drain stopped on an out-of-range stored offset: where to resume "
            "(earliest: re-read the log from its start; latest: skip to its end). Offsets in range are kept",
        )
    },
)
def ingest_market_data() -> None:
    @task(pool="kafka_drains")
    def drain(kind: str, **context: Any) -> dict:
        from derivlake.ingest.airflow_task import run_drain_task

        return run_drain_task(kind, context)

    # one task per topic (not .expand): each carries the outlets of its own tables
    for kind, tables in TABLE_ASSETS.items():
        outlets = [Asset(asset_uri(t)) for t in tables]
        drain.override(task_id=f"drain_{kind.replace('.', '_')}", outlets=outlets)(kind)


ingest_market_data()
