"""What the commit guard links: DuckLake's files made since a time, in the directories a commit writes."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

from derivlake.config import LakeSettings
from derivlake.lake.commit_guard import guards_commits, table_dirs, written_since


def _name(ms: int, suffix: str = ".parquet") -> str:
    """A DuckLake file name around a v7 UUID of time `ms` (built by hand, independently of the code)."""
    raw = f"{ms:012x}7{uuid.uuid4().hex[13:]}"
    return f"ducklake-{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:32]}{suffix}"


def test_written_since_reads_the_time_of_a_v7_uuid_name() -> None:
    t = 1_796_000_000_000
    assert written_since(_name(t), t) and written_since(_name(t + 1), t)
    assert not written_since(_name(t - 1), t)
    assert written_since(_name(t, "-delete.parquet"), t)  # a delete file
    assert not written_since("ducklake-01a22de6-46f9-451c-921e-e2d063943307.parquet", 0)  # not a v7 UUID
    assert not written_since("data_0.parquet", 0) and not written_since(_name(t, ".tmp"), 0)


def test_table_dirs_are_the_table_and_its_dates(tmp_path: Path) -> None:
    lake = LakeSettings(home=tmp_path)
    data = Path(lake.data_dir)
    dirs = table_dirs(lake, ["ops.ingest_runs", "market.trades"], [date(2026, 11, 30), date(2026, 11, 29)])
    assert dirs == [str(d) for d in (
        data / "market/trades", data / "market/trades/date=2026-11-29", data / "market/trades/date=2026-11-30",
        data / "ops/ingest_runs", data / "ops/ingest_runs/date=2026-11-29", data / "ops/ingest_runs/date=2026-11-30",
    )]  # fmt: skip
    in_bucket = LakeSettings(home=tmp_path, data_path="s3://bucket/lake/")  # prefixes, as pyarrow names them
    assert table_dirs(in_bucket, ["market.trades"], [date(2026, 11, 30)]) == [
        "bucket/lake/market/trades", "bucket/lake/market/trades/date=2026-11-30"
    ]  # fmt: skip


def test_only_network_catalogs_with_a_local_data_path_or_a_bucket_are_guarded(tmp_path: Path) -> None:
    assert not guards_commits(LakeSettings(home=tmp_path))  # SQLite: no reply to lose
    assert not guards_commits(LakeSettings(home=tmp_path, data_path="s3://bucket/lake/"))
    pg = "postgres:dbname=lake host=db user=lake"
    assert guards_commits(LakeSettings(home=tmp_path, catalog=pg))
    assert guards_commits(LakeSettings(home=tmp_path, catalog=pg, data_path="s3://bucket/lake/"))
    assert not guards_commits(LakeSettings(home=tmp_path, catalog=pg, data_path="gs://bucket/lake/"))
