"""Every DAG file imports under the pinned Airflow and follows the project's rules for DAGs."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
HEAVY = {"pandas", "pyarrow", "duckdb", "confluent_kafka", "numpy", "scipy"}
DAG_FILES = sorted(DAGS.glob("*.py"))


def test_there_are_dags_and_they_import(dagbag) -> None:
    assert DAG_FILES, "dags/ has no DAG files"
    assert dagbag.import_errors == {}
    assert {"ingest_market_data", "eod_options_chain"} <= set(dagbag.dag_ids)


def test_every_dag_has_docs_tags_owner_retries_timeouts_and_a_schedule(dagbag) -> None:
    for dag_id in dagbag.dag_ids:
        dag = dagbag.get_dag(dag_id)
        assert dag.doc_md and len(dag.doc_md) > 80, dag_id
        assert dag.tags, dag_id
        assert dag.max_active_runs, dag_id
        assert type(dag.timetable).__name__ != "NullTimetable", f"{dag_id} has no schedule"
        assert not dag.catchup, dag_id
        for t in dag.tasks:
            assert t.owner not in ("airflow", "", None), (dag_id, t.task_id)
            assert t.retries >= 1, (dag_id, t.task_id)
            assert isinstance(t.execution_timeout, timedelta), (dag_id, t.task_id)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_are_thin_and_import_nothing_heavy_at_module_level(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 80, f"{path.name} is not a thin DAG file"
    tree = ast.parse(path.read_text())
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {(n.module or "").split(".")[0] for n in top_level if isinstance(n, ast.ImportFrom)}
    names |= {a.name.split(".")[0] for n in top_level if isinstance(n, ast.Import) for a in n.names}
    assert not names & HEAVY, f"{path.name} imports {names & HEAVY} at module level"
