"""The commit guard against a real DuckLake on a real Postgres catalog, with the COMMIT's reply cut:
files on a local data path (hard links) and in a bucket (server-side copies)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
from derivlake.lake.commit_guard import guarded_commit, now_ms
from tests.conftest import guard_copies, tmpfs, unreferenced_files
from tests.postgres_support import CommitReplyCutter

ROW = "(TIMESTAMP '2026-11-30 08:00', 'market', 'trades', DATE '2026-11-30', 7, 1, 100)"


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, postgres_server, tmp_path: Path):
    """A fresh Postgres lake with its files on a local data path or in a bucket of the S3 test server."""

    def lake() -> LakeSettings:
        catalog = postgres_server.catalog_spec(postgres_server.new_database())
        if request.param == "local":
            return LakeSettings(home=tmp_path / "home", catalog=catalog)
        request.getfixturevalue("s3_credentials")
        return request.getfixturevalue("s3_server").lake(tmp_path / "home", catalog)

    return lake


@pytest.mark.parametrize("guarded", [True, False])
def test_a_commit_whose_reply_is_lost_keeps_its_files_only_when_guarded(
    postgres_server, store, guarded: bool
) -> None:
    """The catalog applies the COMMIT, the client sees its connection drop. DuckLake 1.5.5 then deletes
    the transaction's files although the catalog references them: the table can no longer be read
    (the unguarded case shows it, and would tell if an upgrade fixed it). Guarded, the files are
    put back: the row is there once, no file is unknown to the catalog, no copy is left."""
    cutter = CommitReplyCutter(postgres_server.port)
    direct = store()
    proxied = cutter.route(direct)
    con = open_lake(proxied)
    try:
        begun = now_ms()
        con.execute("BEGIN")
        con.execute(f"INSERT INTO ops.table_stats VALUES {ROW}")
        cutter.armed.set()
        with pytest.raises(duckdb.Error, match="server closed the connection"):
            if guarded:
                guarded_commit(con, proxied, ["ops.table_stats"], begun)
            else:
                con.execute("COMMIT")
    finally:
        con.close()
        cutter.close()
    assert cutter.cut.is_set()
    reader = open_lake(direct, read_only=True)
    try:
        if guarded:
            assert reader.execute("SELECT rows FROM ops.table_stats").fetchall() == [(7,)]
        else:  # a local file, or an object
            with pytest.raises(
                (duckdb.IOException, duckdb.HTTPException), match=r"Cannot open file|HTTP GET error"
            ):
                reader.execute("SELECT rows FROM ops.table_stats").fetchall()
    finally:
        reader.close()
    if guarded:
        assert unreferenced_files(direct) == set()
        assert guard_copies(direct) == []


def test_a_commit_that_fails_before_the_catalog_applies_it_leaves_only_orphans(
    postgres_server, store
) -> None:
    """Files put back after a COMMIT the catalog never applied are unreferenced: the orphan sweep's."""
    lake = store()
    con = open_lake(lake)
    try:
        begun = now_ms()
        con.execute("BEGIN")
        con.execute(f"INSERT INTO ops.table_stats VALUES {ROW}")
        postgres_server.halt()
        try:
            with pytest.raises(duckdb.Error):
                guarded_commit(con, lake, ["ops.table_stats"], begun)
        finally:
            postgres_server.resume()
    finally:
        con.close()
    reader = open_lake(lake, read_only=True)
    try:
        assert reader.execute("SELECT count(*) FROM ops.table_stats").fetchone() == (0,)
    finally:
        reader.close()
    assert len(unreferenced_files(lake)) == 1 and guard_copies(lake) == []


def test_without_hard_links_the_commit_goes_through_unguarded_and_says_so(
    postgres_server, tmp_path, caplog
) -> None:
    """A table directory on another filesystem (no hard link across): the guard steps aside."""
    dbname = postgres_server.new_database()
    lake = LakeSettings(home=tmp_path / "home", catalog=postgres_server.catalog_spec(dbname))
    con = open_lake(lake)
    elsewhere = Path(lake.data_dir, "ops", "table_stats")
    elsewhere.mkdir(parents=True, exist_ok=True)
    try:  # a skip closes the connection too
        with tmpfs(elsewhere, "8m", "a table on another filesystem"):
            begun = now_ms()
            con.execute("BEGIN")
            con.execute(f"INSERT INTO ops.table_stats VALUES {ROW}")
            with caplog.at_level("WARNING", logger="derivlake.lake.commit_guard"):
                guarded_commit(con, lake, ["ops.table_stats"], begun)
            assert con.execute("SELECT rows FROM ops.table_stats").fetchall() == [(7,)]
    finally:
        con.close()
    assert "commit guard unavailable" in caplog.text and "Invalid cross-device link" in caplog.text
    assert guard_copies(lake) == []
