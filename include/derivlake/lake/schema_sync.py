"""Bring the tables of a lake made by an older derivlake up to the columns this version declares.

`CREATE TABLE IF NOT EXISTS` leaves an existing table as it is, so a column that a later version adds
to its DDL would be missing from every lake made before, and the reports, which cut their frames to
the table's columns, would drop its values without a word. So every writer compares the DDL with the
lake when it opens it and adds what is missing, in one transaction; the rows already there read NULL
in a new column. A changed type is promoted in place where DuckLake can widen it (INTEGER to BIGINT,
FLOAT to DOUBLE); any other change stops the writer with an error naming the column, and nothing is
changed: rewriting committed data is an operator's decision, not something to do on open. A column
the DDL no longer declares is kept (every insert names its columns, so new rows read NULL there).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from derivlake.lake.catalog import SQL, LakeError, is_commit_conflict, is_connection_lost, with_commit_retries

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

Columns = dict[str, list[tuple[str, str]]]
"""schema.table -> [(column, DuckDB type)] in table order."""


class LakeSchemaError(LakeError):
    """A lake table's column has a type this version cannot reach by widening it."""


@dataclass(frozen=True)
class ColumnChange:
    table: str
    column: str
    new_type: str
    old_type: str | None = None  # None: the column is added

    def statement(self) -> str:
        if self.old_type is None:
            return f'ALTER TABLE {self.table} ADD COLUMN "{self.column}" {self.new_type}'
        return f'ALTER TABLE {self.table} ALTER COLUMN "{self.column}" SET DATA TYPE {self.new_type}'

    def describe(self) -> str:
        if self.old_type is None:
            return f"added column {self.table}.{self.column} {self.new_type}"
        return f"widened {self.table}.{self.column} from {self.old_type} to {self.new_type}"


@functools.cache
def declared_columns(ddl: str) -> Columns:
    """The tables and columns a DDL script declares, as DuckDB itself parses them (in memory)."""
    import duckdb

    with duckdb.connect() as mem:
        mem.execute(ddl)
        return table_columns(mem)


def table_columns(con: duckdb.DuckDBPyConnection) -> Columns:
    """The columns of the current database's tables (the lake's, once `open_lake` has USEd it)."""
    out: Columns = {}
    for table, column, data_type in con.execute((SQL / "table_columns.sql").read_text()).fetchall():
        out.setdefault(table, []).append((column, data_type))
    return out


def column_changes(declared: Columns, existing: Columns) -> list[ColumnChange]:
    """What turns `existing` into `declared`: columns to add and types to change, in declared order.
    Tables missing from `existing` are left out (CREATE TABLE makes them whole)."""
    changes = []
    for table, columns in declared.items():
        if table not in existing:
            continue
        have = {name.lower(): data_type for name, data_type in existing[table]}
        for name, data_type in columns:
            old = have.get(name.lower())
            if old != data_type:
                changes.append(ColumnChange(table, name, data_type, old))
    return changes


def sync_columns(con: duckdb.DuckDBPyConnection, ddl: str) -> list[ColumnChange]:
    """Add the columns (and widen the types) the lake lacks against `ddl`, in ONE transaction, planned
    inside it: of two writers doing it at once, the second loses the commit race, retries, and finds
    nothing left to do."""
    declared = declared_columns(ddl)

    def apply() -> list[ColumnChange]:
        con.execute("BEGIN")
        changes = column_changes(declared, table_columns(con))
        if not changes:
            con.execute("ROLLBACK")
            return []
        for change in changes:
            try:
                con.execute(change.statement())
            except Exception as exc:
                if is_commit_conflict(exc) or is_connection_lost(exc):
                    raise
                raise LakeSchemaError(
                    f"{change.table}.{change.column} is {change.old_type} in the lake, but this version of "
                    f"derivlake declares {change.new_type}, and DuckLake cannot change it in place "
                    f"({str(exc).splitlines()[0]}). Nothing was changed; see README 'Upgrading a lake'"
                ) from None
        con.execute("COMMIT")
        return changes

    changes = with_commit_retries(
        con, "bring the lake's tables up to date", apply, attempts=20, first_delay_s=0.05, max_delay_s=1.0
    )
    for change in changes:
        log.warning("the lake was made by an older derivlake: %s", change.describe())
    return changes


def ensure_tables(con: duckdb.DuckDBPyConnection, ddl_path: Path) -> list[ColumnChange]:
    """Create the tables of `ddl_path` that are missing and bring the others up to its columns."""
    ddl = ddl_path.read_text()
    with_commit_retries(
        con,
        f"create the tables of {ddl_path.name}",
        lambda: con.execute(ddl),
        attempts=20,
        first_delay_s=0.05,
        max_delay_s=1.0,
    )
    return sync_columns(con, ddl)
