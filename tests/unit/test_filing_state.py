"""The filing-log diff (rts22_changes.sql) against an independent implementation in Python, over random
filing histories: what a rerun cancels and files anew."""

from __future__ import annotations

import random
from datetime import date

import duckdb
import pandas as pd
import pytest

from derivlake.regulatory.filing_state import ActionCounts, filing_state
from derivlake.regulatory.records import CXL, NEW

DAY = date(2024, 3, 8)


def changes_oracle(current: dict[str, str], log: list[tuple[int, str, str, str | None]]) -> tuple[set, set]:
    """(tx_ids to cancel, (tx_id, hash) to file as new): replay the log in filing order (a sequence's
    cancellations, then its new records); what was filed last for a transaction stands until cancelled."""
    standing: dict[str, str] = {}
    for _, action, tx_id, content_hash in sorted(log, key=lambda r: (r[0], r[1] == NEW)):
        if action == NEW:
            standing[tx_id] = content_hash
        else:
            standing.pop(tx_id, None)
    cancel = {t for t, h in standing.items() if current.get(t) != h}
    new = {(t, h) for t, h in current.items() if standing.get(t) != h}
    return cancel, new


def _history(rng: random.Random) -> tuple[dict[str, str], list[tuple[int, str, str, str | None]]]:
    """A filing log made by filing successive random versions of the day's transactions, then the
    day's transactions now."""
    ids = [f"ACCT{i}" for i in range(rng.randint(0, 12))]

    def version() -> dict[str, str]:
        return {t: rng.choice("abc") for t in ids if rng.random() < 0.8}

    log: list[tuple[int, str, str, str | None]] = []
    for sequence in range(1, rng.randint(1, 4)):
        cancel, new = changes_oracle(now := version(), log)
        log += [(sequence, CXL, t, None) for t in cancel] + [(sequence, NEW, t, h) for t, h in new]
        assert changes_oracle(now, log) == (set(), set()), "a filed version stands"
    return version(), log


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA reports")
    con.execute(
        "CREATE TABLE reports.rts22_filed (as_of_date DATE, sequence INTEGER, action VARCHAR, tx_id VARCHAR, "
        "content_hash VARCHAR)"
    )
    yield con
    con.close()


def test_the_diff_agrees_with_replaying_the_log(con: duckdb.DuckDBPyConnection) -> None:
    rng = random.Random(20261203)
    for _ in range(150):
        current, log = _history(rng)
        con.execute("DELETE FROM reports.rts22_filed")
        other_day = [(date(2024, 3, 7), 1, NEW, t, "z") for t in current]  # another day's log is ignored
        rows = [(DAY, *r) for r in log] + other_day
        if rows:
            con.executemany("INSERT INTO reports.rts22_filed VALUES (?, ?, ?, ?, ?)", rows)
        with filing_state(con) as state:
            if current:
                con.executemany(f"INSERT INTO {state.current} VALUES (?, ?)", list(current.items()))
            counts = state.plan_changes(DAY)
            planned = con.execute(f"SELECT action, tx_id, content_hash FROM {state.actions}").fetchall()
            cancel, new = changes_oracle(current, log)
            assert sorted(planned, key=str) == sorted(
                [(CXL, t, None) for t in cancel] + [(NEW, t, h) for t, h in new], key=str
            )
            assert counts == ActionCounts(len(cancel), len(new))
            cancelled = [t for chunk in state.cancellations(2048) for t in chunk["tx_id"]]
            assert cancelled == sorted(cancel), "cancellations in TxId order"
            last = max((r[0] for r in log), default=0)
            if last:
                assert state.take_filed(DAY, last) == ActionCounts(
                    sum(r[1] == CXL for r in log if r[0] == last),
                    sum(r[1] == NEW for r in log if r[0] == last),
                )


def test_state_tables_are_the_filings_own_and_dropped_after(con: duckdb.DuckDBPyConnection) -> None:
    with filing_state(con) as one, filing_state(con) as two:
        assert one.current != two.current
        con.execute(f"INSERT INTO {one.current} VALUES ('A', 'h')")
        assert con.execute(f"SELECT count(*) FROM {two.current}").fetchone() == (0,)
        tx = pd.DataFrame({"tx_id": ["A", "B", "C"], "price": [1.0, 2.0, 3.0]})
        one.plan_changes(DAY)
        assert one.filed_new(tx)["tx_id"].tolist() == ["A"]
    left = con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main'").fetchone()
    assert left == (0,)
