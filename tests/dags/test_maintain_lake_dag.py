"""`dag.test()` of maintain_lake on a real lake: it compacts and its asset event carries the stats."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake


def test_maintain_lake_compacts_and_reports(dagbag, lake_in_env: LakeSettings) -> None:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    lake = lake_in_env  # SQLite, and Postgres as in the compose deployment
    con = open_lake(lake)
    for i in range(12):
        con.execute(
            "INSERT INTO market.index_prices (index_name, timestamp, price, date) "
            "SELECT 'btc_usd', TIMESTAMP '2025-03-06' + to_seconds(? * 100 + r), 90000 + r, DATE '2025-03-06' "
            "FROM range(100) t(r)",
            [i],
        )
    con.close()
    # as a writer killed before its commit leaves it: a Parquet file the catalog never heard of, 2 days old
    written = next(Path(lake.data_dir).rglob("date=2025-03-06/*.parquet"))
    orphan = written.with_name(f"ducklake-{uuid.uuid4()}.parquet")
    shutil.copy(written, orphan)
    os.utime(orphan, (time.time() - 48 * 3600,) * 2)
    run = dagbag.get_dag("maintain_lake").test(run_conf={"target_file_size_mb": 1})
    assert run.state == DagRunState.SUCCESS
    with create_session() as session:
        events = [
            (e.asset.uri, e.extra)
            for e in session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id).all()
        ]
    ((uri, extra),) = events
    assert uri.rstrip("/") == "lake://maintenance"  # Airflow normalises the URI
    stats = extra["tables"]["market.index_prices"]
    con = open_lake(lake, read_only=True)
    ((merged,),) = con.execute(
        "SELECT data_file FROM ducklake_list_files('lake', 'index_prices', schema => 'market')"
    ).fetchall()  # the live file (the replaced ones stay on disk for the grace period)
    con.close()
    assert stats == {"rows": 1200, "files": 1, "bytes": Path(merged).stat().st_size, "partitions": 1}
    assert extra["files_before"] >= 12
    assert extra["files_merged"] >= 12 and extra["files_written"] >= 1  # 12 drain files among them
    assert extra["orphaned_files_deleted"] == 1 and not orphan.exists()  # older than the 24 h default
