"""Errors about the lake catalog name it, without the Postgres password its spec may carry."""

from __future__ import annotations

from pathlib import Path

import pytest

from derivlake.config import LakeSettings
from derivlake.lake.catalog import LakeError, open_lake
from tests.conftest import free_port


def test_an_unreachable_postgres_catalog_is_named_with_its_password_masked(tmp_path: Path) -> None:
    spec = f"postgres:dbname=lake host=127.0.0.1 port={free_port()} user=derivlake password=s3cret"
    with pytest.raises(
        LakeError, match=r"cannot attach the lake catalog postgres:dbname=lake .*password=\*\*\*"
    ) as err:
        open_lake(LakeSettings(home=tmp_path, catalog=spec, data_path=f"{tmp_path}/data/"))
    assert "s3cret" not in str(err.value)


def test_a_persistent_conflict_names_the_catalog_and_keeps_the_password_out_of_the_traceback() -> None:
    # a Postgres catalog that refuses commits cannot be caused here: the failure is raised by hand,
    # quoting the spec as a connection error would; the retry loop and the connection are real
    import traceback

    import duckdb

    from derivlake.lake.catalog import CatalogBusy, with_commit_retries

    def commit() -> None:
        raise duckdb.TransactionException(
            "Failed to commit DuckLake transaction: database is locked (host=db password=s3cret)"
        )

    with pytest.raises(CatalogBusy, match=r"stayed locked .*TransactionException: .*password=\*\*\*") as err:
        with_commit_retries(duckdb.connect(), "commit", commit, attempts=2, first_delay_s=0, max_delay_s=0)
    assert "s3cret" not in "".join(traceback.format_exception(err.value))


@pytest.mark.parametrize(
    ("raw", "short"),
    [
        # DuckDB 1.5.5 errors seen on a Postgres catalog whose server went away (2026-11-30)
        (
            'Failed to get global stats information from DuckLake: Failed to prepare COPY "COPY (SELECT '
            '"table_id" FROM "public"."ducklake_table_stats" WHERE "table_id" = \'10\') TO STDOUT (FORMAT '
            '"binary");": server closed the connection unexpectedly\n\tThis probably means the server '
            "terminated abnormally\n\tbefore or while processing the request.",
            "Failed to get global stats information from DuckLake: Postgres: server closed the connection unexpectedly",
        ),
        (
            'IO Error: Failed to query most recent snapshot for DuckLake: Unable to connect to Postgres at "dbname=l '
            'host=db password=s3cret application_name=derivlake": connection to server at "db", port 5432 '
            "failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?\n"
            "LINE 2: SELECT * FROM postgres_query('__ducklake_metadata_lake', ^",
            'IO Error: Failed to query most recent snapshot for DuckLake: Postgres: connection to server at "db", '
            "port 5432 failed: Connection refused Is the server running on that host and accepting TCP/IP connections?",
        ),
        (
            "TransactionContext Error: Failed to commit: Failed to commit DuckLake transaction. Failed to flush "
            'changes into DuckLake: Failed to execute query "INSERT INTO t VALUES (1);": ERROR:  canceling '
            "statement due to lock timeout\nLINE 3: INSERT ...",
            "TransactionContext Error: Failed to commit: Failed to commit DuckLake transaction. Failed to flush "
            "changes into DuckLake: Postgres: canceling statement due to lock timeout",
        ),
    ],
)
def test_catalog_errors_are_shortened_to_their_cause(raw: str, short: str) -> None:
    from derivlake.lake.catalog import short_cause

    assert short_cause(Exception(raw)) == short


@pytest.mark.parametrize(
    ("message", "lost"),
    [
        ("Failed to execute query: server closed the connection unexpectedly", True),
        ("Failed to execute query: SSL connection has been closed unexpectedly", True),
        ("could not receive data from server: Connection timed out", True),
        ("FATAL: terminating connection due to administrator command", True),
        ("Transaction conflict: cannot commit, another transaction changed the table", False),
        ("Catalog Error: Table with name nope does not exist", False),
    ],
)
def test_lost_connections_are_told_from_other_catalog_errors(message: str, lost: bool) -> None:
    """A COMMIT whose connection was lost may have been applied: only those are checked for on retry
    (and guarded against DuckLake deleting the files the catalog then references)."""
    import duckdb

    from derivlake.lake.catalog import is_connection_lost

    assert is_connection_lost(duckdb.IOException(message)) is lost
    assert not is_connection_lost(RuntimeError(message))  # not from DuckDB: not the catalog connection
