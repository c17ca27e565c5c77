"""
### maintain_lake
Hourly: merge the small files the drains leave (up to `target_file_size_mb`, rows ordered by symbol
and time), expire snapshots older than `retention_days`, delete unreferenced files after the grace
period and files no transaction ever committed (left by killed writers) after `orphan_grace_hours`,
and record rows, files and bytes per table and date partition in `ops.table_stats`. Runs
while drains commit and analysts read: DuckLake snapshots keep readers consistent, and commit
conflicts are retried. The `lake://maintenance` asset event carries the per-table stats.
"""

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, task

MAINTENANCE = Asset("lake://maintenance")


@dag(
    schedule="@hourly",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["derivlake", "lake"],
    default_args={
        "owner": "derivlake",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "execution_timeout": timedelta(minutes=45),
    },
    params={
        "target_file_size_mb": Param(128, type="integer", minimum=1, maximum=4096,
                                     description="merge a partition's small files up to this size (MB)"),
        "retention_days": Param(7, type="number", minimum=0, maximum=3650,
                                description="expire snapshots older than this (the time-travel horizon, days)"),
        # shorter than a running drain or merge would delete its files
        "orphan_grace_hours": Param(24, type="number", minimum=1, maximum=8760,
                                    description="delete files no commit ever listed (killed writers) once "
                                    "older than this (hours); it must outlast the longest drain or merge"),
    },
)  # fmt: skip
def maintain_lake() -> None:
    @task(outlets=[MAINTENANCE])
    def compact_and_measure(**context: Any) -> dict:
        from derivlake.lake.maintenance_task import run_maintenance_task

        return run_maintenance_task(context, MAINTENANCE)

    compact_and_measure()


maintain_lake()
