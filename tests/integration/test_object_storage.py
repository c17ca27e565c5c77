"""The lake with its files in S3 (an S3-compatible server speaking the real protocol): drains,
maintenance and analysts work as on a filesystem, and its faults fail clearly and lose nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from derivlake.config import KafkaSettings, LakeSettings
from derivlake.ingest.drain import drain_topic
from derivlake.lake.catalog import LakeError, lake_tables, open_lake
from derivlake.lake.maintenance import MaintenanceConfig, maintain
from tests.conftest import lake_env
from tests.integration.drain_support import lake_provenance, produce_tickers
from tests.integration.test_drain import FAST, _all_offsets
from tests.s3_support import S3Server, lake_objects

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("s3_credentials")


@pytest.fixture(params=["sqlite", "postgres"])
def s3_lake(request: pytest.FixtureRequest, s3_server: S3Server, tmp_path: Path) -> LakeSettings:
    """A fresh lake with its files in a bucket of its own, on each catalog."""
    catalog = ""
    if request.param == "postgres":
        pg = request.getfixturevalue("postgres_server")
        catalog = pg.catalog_spec(pg.new_database())
    return s3_server.lake(tmp_path / "home", catalog)


def _bucket(lake: LakeSettings) -> str:
    return lake.data_dir.removeprefix("s3://").split("/", 1)[0]


def test_a_drain_lands_every_message_once_in_the_bucket(kafka: KafkaSettings, s3_lake: LakeSettings) -> None:
    produce_tickers(kafka, 0, 5000)
    first = drain_topic(kafka, s3_lake, "deribit.ticker", FAST)
    produce_tickers(kafka, 5000, 3000)
    second = drain_topic(kafka, s3_lake, "deribit.ticker", FAST)
    assert (first.messages, second.messages) == (5000, 3000)
    assert lake_provenance(s3_lake) == _all_offsets(kafka, "deribit.ticker")
    con = open_lake(s3_lake, read_only=True)
    files = {f for (f,) in con.execute("SELECT data_file FROM ducklake_list_files('lake', 'options_ticker', schema => 'market')").fetchall()}  # fmt: skip
    con.close()
    assert files and files <= set(lake_objects(s3_lake))  # every data file is an object
    assert not Path(s3_lake.lake_dir, "data").exists()  # and nothing went to a local directory


def test_maintenance_merges_in_the_bucket_and_sweeps_its_orphans(
    kafka: KafkaSettings, s3_lake: LakeSettings, s3_server: S3Server
) -> None:
    from derivlake.config import DrainSettings

    produce_tickers(kafka, 0, 4000)
    drain_topic(kafka, s3_lake, "deribit.ticker", DrainSettings(idle_timeout_s=5, batch_messages=500))
    bucket = _bucket(s3_lake)
    con = open_lake(s3_lake, read_only=True)
    (date,) = con.execute("SELECT min(date) FROM market.options_ticker").fetchone()
    con.close()
    # a writer killed before its commit left this object behind, and one killed in its COMMIT a guard copy
    orphan = f"lake/market/options_ticker/date={date}/ducklake-{uuid.uuid4()}.parquet"
    guard_copy = f"lake/.commit-guard/{uuid.uuid4().hex}/0-ducklake-{uuid.uuid4()}.parquet"
    for key in (orphan, guard_copy):
        s3_server.put(bucket, key, b"PAR1")
    config = MaintenanceConfig(target_file_size_bytes=64 * 2**20, orphan_grace=timedelta(0))
    result = maintain(s3_lake, config)
    part = next(p for p in result.partitions if p["table"] == "market.options_ticker")
    assert result.files_before >= 8 > part["files"] == 1 and result.orphaned_files == 2
    assert not {f"s3://{bucket}/{k}" for k in (orphan, guard_copy)} & set(lake_objects(s3_lake))
    assert lake_provenance(s3_lake) == _all_offsets(kafka, "deribit.ticker")


def test_analysts_read_the_bucket_through_the_sql_command_and_the_duckdb_cli(
    kafka: KafkaSettings, s3_lake: LakeSettings, tmp_path: Path
) -> None:
    produce_tickers(kafka, 0, 1000)
    drain_topic(kafka, s3_lake, "deribit.ticker", FAST)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include"), **lake_env(s3_lake)}
    sql = [sys.executable, "-m", "derivlake", "sql"]
    done = subprocess.run([*sql, "SELECT count(*) AS n FROM market.options_ticker", "--format", "csv"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout == "n\n1000\n", done.stderr
    init = tmp_path / "lake.sql"
    init.write_text(
        subprocess.run([*sql, "--init-script"], env=env, capture_output=True, text=True, check=True).stdout
    )
    cli = Path(sys.executable).with_name("duckdb")
    run = subprocess.run([str(cli), "-init", str(init), "-csv", "-c", "SELECT count(*) AS n FROM market.options_ticker"],
                         env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0 and run.stdout.splitlines()[-2:] == ["n", "1000"], run.stderr


def test_without_credentials_the_error_says_what_to_set(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws profile either
    lake = s3_server.lake(tmp_path / "home")
    with pytest.raises(
        LakeError, match=rf"no S3 credentials found for the data path {lake.data_dir}: set AWS_ACCESS_KEY_ID"
    ):
        open_lake(lake)


def test_a_missing_bucket_fails_the_drain_commits_nothing_and_the_next_run_resumes(
    kafka: KafkaSettings, s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    lake = s3_server.lake(tmp_path / "home", bucket=bucket)
    produce_tickers(kafka, 0, 2000)
    with pytest.raises(Exception, match=rf"(?s)s3://{bucket}/.*NoSuchBucket"):
        drain_topic(kafka, lake, "deribit.ticker", FAST)
    con = open_lake(lake, read_only=True)  # the catalog exists: the lake's first write failed
    assert lake_tables(con) == []
    con.close()
    s3_server.make_bucket(bucket)
    assert drain_topic(kafka, lake, "deribit.ticker", FAST).messages == 2000
    assert lake_provenance(lake) == _all_offsets(kafka, "deribit.ticker")


def test_the_chain_from_a_lake_in_the_bucket_is_the_chain_from_a_lake_on_disk(
    s3_lake: LakeSettings, tmp_path: Path
) -> None:
    """The end-of-day report reads and stores through the bucket: byte for byte the CSV that the same
    day gives on a local lake (test_chain_build checks that one against hand-computed numbers)."""
    from derivlake.reports.chain import build_chain
    from tests.integration.test_chain_build import D, report_rows, seed_day

    local = LakeSettings(home=tmp_path / "local")
    built = {}
    for lake in (s3_lake, local):
        con = open_lake(lake)
        seed_day(con)
        con.close()
        built[lake.home] = build_chain(lake, D, html=False).csv_path.read_bytes()
    assert built[s3_lake.home] == built[local.home] and built[local.home].count(b"\n") == 32
    assert report_rows(s3_lake, "options_chain") == report_rows(local, "options_chain")
    keys = {k.rsplit("/", 2)[-2] for k in lake_objects(s3_lake)}
    assert {"options_chain", "options_chain_expiry"} <= keys  # stored as objects in the bucket
