"""The per-transaction state of a day's RTS 22 filing, held in DuckDB tables instead of Python objects:
the day's transactions with their content hashes, and the actions of the sequence being rendered.

The tables live in the lake connection's in-memory database, so `DERIVLAKE_DUCKDB_MEMORY_LIMIT` caps them
and DuckDB spills the rest: an export's memory does not grow with the day's executions. They are written
through a cursor of that connection, because a pass over the fills streams its result on the connection
itself, and they are dropped when the filing is done.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from derivlake.regulatory.records import (
    CXL,
    NEW,
    ExportError,
    content_hash_sql,
    fill_chunks,
    rts22_transactions,
)
from derivlake.regulatory.settings import RegulatorySettings

if TYPE_CHECKING:
    from datetime import date, datetime
    from typing import BinaryIO

    import duckdb
    import pandas as pd

SQL_DIR = Path(__file__).with_name("sql")
_CHUNK = "filing_state_chunk"


@dataclass(frozen=True)
class ActionCounts:
    """The cancellations and new records of one sequence."""

    cancelled: int
    new: int

    @property
    def total(self) -> int:
        return self.cancelled + self.new


@dataclass(frozen=True)
class FilingState:
    con: duckdb.DuckDBPyConnection
    cursor: duckdb.DuckDBPyConnection
    current: str
    """tx_id, content_hash: every transaction of the day's fills, as they are now."""
    actions: str
    """action, tx_id, content_hash (NULL for a CXL): what the sequence being rendered files."""

    def _sql(self, name: str) -> str:
        return (SQL_DIR / name).read_text().format(current=self.current, actions=self.actions)

    def hash_transactions(self, fills_sql: str, settings: RegulatorySettings) -> int:
        """The first pass over the fills: each transaction's tx_id and content hash. Returns their number."""
        count = 0
        for chunk in fill_chunks(self.con, fills_sql, settings.chunk_rows):
            tx = rts22_transactions(chunk, settings)
            with self._chunk(tx):
                digest = content_hash_sql(self.cursor, _CHUNK)
                self.cursor.execute(f"INSERT INTO {self.current} SELECT tx_id, {digest} FROM {_CHUNK}")
            count += len(tx)
        (read,) = self.con.execute(f"SELECT count(*) FROM (\n{fills_sql}\n)").fetchone()
        if read != count:  # a statement on `con` mid-stream ends it without an error, or the fills changed
            raise ExportError(f"read {count} of the day's {read} fills: nothing was filed; rerun")
        return count

    @contextlib.contextmanager
    def _chunk(self, frame: pd.DataFrame) -> Iterator[None]:
        """`frame` as the cursor's view `_CHUNK` while the block runs."""
        self.cursor.register(_CHUNK, frame)
        try:
            yield
        finally:
            self.cursor.unregister(_CHUNK)

    def plan_changes(self, as_of: date) -> ActionCounts:
        """The actions of the next sequence: the standing transactions to cancel, those to file anew."""
        return self._set_actions("rts22_changes.sql", [as_of])

    def take_filed(self, as_of: date, sequence: int) -> ActionCounts:
        """The actions of a sequence already filed, to render its file again from the log."""
        return self._set_actions("rts22_sequence.sql", [as_of, sequence])

    def _set_actions(self, sql_file: str, params: list[object]) -> ActionCounts:
        """Replace the actions with what `sql_file` inserts (on `con`: it reads the lake's filing log)."""
        self.cursor.execute(f"DELETE FROM {self.actions}")
        self.con.execute(self._sql(sql_file), params)
        return self.counts()

    def counts(self) -> ActionCounts:
        cancelled, new = self.cursor.execute(
            f"SELECT count(*) FILTER (action = '{CXL}'), count(*) FILTER (action = '{NEW}') FROM {self.actions}"
        ).fetchone()
        return ActionCounts(int(cancelled), int(new))

    def cancellations(self, rows: int) -> Iterator[pd.DataFrame]:
        """The tx_ids to cancel, in order, `rows` at a time (whole DuckDB vectors of 2,048)."""
        result = self.cursor.execute(
            f"SELECT tx_id FROM {self.actions} WHERE action = '{CXL}' ORDER BY tx_id"
        )
        while not (chunk := result.fetch_df_chunk(max(1, rows // 2048))).empty:
            yield chunk

    def filed_new(self, tx: pd.DataFrame) -> pd.DataFrame:
        """The rows of `tx` (one chunk of the second pass) that this sequence files as new records."""
        with self._chunk(tx[["tx_id"]]):
            kept = self.cursor.execute(
                f"SELECT DISTINCT c.tx_id FROM {_CHUNK} c "
                f"SEMI JOIN {self.actions} a ON a.tx_id = c.tx_id AND a.action = '{NEW}'"
            ).fetchall()
        return tx[tx["tx_id"].isin([t for (t,) in kept])]

    def render(
        self, out: BinaryIO, fills_sql: str, settings: RegulatorySettings, message_id: str, created: datetime
    ) -> int:
        """Stream the sequence's file to `out`: its cancellations, then its new records with the fills'
        content now (the second pass over the fills), in the day's order. Returns the transactions written."""
        from derivlake.regulatory.rts22 import Rts22Header, write_rts22

        def chunks() -> Iterator[pd.DataFrame]:
            for ids in self.cancellations(settings.chunk_rows):
                yield ids.assign(
                    action=CXL, executing_lei=settings.entity_lei, submitting_lei=settings.entity_lei
                )
            for chunk in fill_chunks(self.con, fills_sql, settings.chunk_rows):
                yield self.filed_new(rts22_transactions(chunk, settings))

        header = Rts22Header(settings.entity_lei, settings.receiver, message_id, created)
        return write_rts22(chunks(), header, out)

    def log_rows(self, as_of: date, sequence: int) -> duckdb.DuckDBPyRelation:
        """The rows `reports.rts22_filed` gets for this sequence, as a relation of the lake connection."""
        return self.con.sql(
            f"SELECT DATE '{as_of.isoformat()}' AS as_of_date, CAST({int(sequence)} AS INTEGER) AS sequence, "
            f"action, tx_id, content_hash FROM {self.actions}"
        )


@contextlib.contextmanager
def filing_state(con: duckdb.DuckDBPyConnection) -> Iterator[FilingState]:
    """Empty state tables, of this filing alone (two filings on one connection do not share them)."""
    cursor = con.cursor()
    try:
        (database,) = cursor.execute("SELECT current_database()").fetchone()
        tag = uuid.uuid4().hex[:12]
        state = FilingState(
            con, cursor, f'"{database}".main.rts22_current_{tag}', f'"{database}".main.rts22_actions_{tag}'
        )
        cursor.execute(state._sql("filing_state.sql"))
        try:
            yield state
        finally:
            cursor.execute(f"DROP TABLE IF EXISTS {state.current}; DROP TABLE IF EXISTS {state.actions}")
    finally:
        cursor.close()
