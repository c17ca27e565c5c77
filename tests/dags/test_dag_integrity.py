"""Every DAG file imports under the pinned Airflow and follows the project's rules for DAGs.

Rules (architecture.md sections 1 and 5): one thin file per DAG (<= 80 lines, no business logic), no heavy
library imported while the dag-processor parses it, and every DAG has doc_md, tags, an owner, retries and
an execution timeout on every task, an explicit schedule (cron, timedelta, preset or assets), catchup off
unless listed below, and an explicit max_active_runs; every param has a description (the trigger form's
only help) and no text param refuses null (the form sends an emptied field as null); parsing a file warns
nothing (a worker parses it before every task, so a warning lands in every task log). The checkers return
a list of problems so that each rule is shown to fail on a broken DAG (the last two tests).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if p.name != "__init__.py")
HEAVY = frozenset({"pandas", "pyarrow", "duckdb", "confluent_kafka", "numpy", "scipy"})
MAX_LINES = 80
CATCHUP_ALLOWED: frozenset[str] = frozenset()  # DAG ids that backfill missed intervals on purpose
MANUAL_ONLY = frozenset({"replay_quarantine"})  # operator tools, triggered by hand with their params
EXPLICIT_DAG_ARGS = ("schedule", "max_active_runs")
DAG_FACTORIES = {"dag", "DAG"}
KNOWN_POOLS = frozenset({"default_pool", "kafka_drains"})  # the pools deploy/airflow-init.sh creates


def _is_dag_call(node: ast.AST) -> bool:
    func = node.func if isinstance(node, ast.Call) else node
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return name in DAG_FACTORIES


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def parse_time_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, top-level package) of every import that runs when the file is parsed: module level and the
    body of a @dag function; not task functions or other functions (they run in a worker), nor
    `if TYPE_CHECKING:` blocks."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                if any(_is_dag_call(d) for d in child.decorator_list):
                    visit(child)  # the @dag function's body runs at parse time
                continue
            if isinstance(child, ast.Lambda) or (isinstance(child, ast.If) and _is_type_checking(child)):
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name.split(".")[0]) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found.append((child.lineno, child.module.split(".")[0]))
            visit(child)

    visit(tree)
    return found


def dag_file_problems(path: Path) -> list[str]:
    """What makes a DAG file other than a thin, cheap-to-parse declaration."""
    text = path.read_text()
    problems = []
    if (n := len(text.splitlines())) > MAX_LINES:
        problems.append(f"{path.name}: {n} lines > {MAX_LINES}: move the logic into include/derivlake/")
    tree = ast.parse(text, filename=str(path))
    for line, module in parse_time_imports(tree):
        if module in HEAVY:
            problems.append(f"{path.name}:{line}: imports {module} at parse time: import it inside the task")
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _is_dag_call(n)]
    if not calls:
        problems.append(f"{path.name}: no @dag(...) or DAG(...) call")
    for call in calls:
        given = {k.arg for k in call.keywords}
        missing = [a for a in EXPLICIT_DAG_ARGS if a not in given and None not in given]  # None: **kwargs
        if missing:
            problems.append(f"{path.name}:{call.lineno}: DAG without explicit {', '.join(missing)}")
    return problems


def dag_problems(dag) -> list[str]:
    """What an operator would miss in the UI or pay for in production."""
    d = dag.dag_id
    problems = []
    if not (dag.doc_md and len(dag.doc_md.strip()) >= 40):
        problems.append(f"{d}: no doc_md (what it does, inputs, outputs, how to rerun)")
    if not dag.tags:
        problems.append(f"{d}: no tags")
    if type(dag.timetable).__name__ == "NullTimetable" and d not in MANUAL_ONLY:
        problems.append(f"{d}: schedule=None: give a cron, timedelta, preset or asset schedule")
    if dag.catchup and d not in CATCHUP_ALLOWED:
        problems.append(f"{d}: catchup=True (add it to CATCHUP_ALLOWED if the backfill is intended)")
    if not dag.max_active_runs or dag.max_active_runs < 1:
        problems.append(f"{d}: max_active_runs not set")
    if not dag.tasks:
        problems.append(f"{d}: no tasks")
    for name in dag.params:
        param = dag.params.get_param(name)
        if not param.description:
            problems.append(f"{d}: param {name} has no description: the trigger form shows its name alone")
        types = param.schema.get("type")
        types = [types] if isinstance(types, str) else list(types or [])
        if "string" in types and "null" not in types:  # the form sends an emptied text field as null
            problems.append(
                f"{d}: param {name} is a string that may not be null: the trigger form then calls it "
                "required and disables Trigger while it is empty; give type ['null', 'string']"
            )
    for t in dag.tasks:
        where = f"{d}.{t.task_id}"
        if t.owner in (None, "", "airflow"):
            problems.append(f"{where}: owner {t.owner!r}: set default_args owner")
        if not t.retries or t.retries < 1:
            problems.append(f"{where}: retries={t.retries}")
        if not isinstance(t.execution_timeout, timedelta) or t.execution_timeout <= timedelta(0):
            problems.append(f"{where}: execution_timeout={t.execution_timeout}")
        if t.pool not in KNOWN_POOLS:
            problems.append(
                f"{where}: pool {t.pool!r} is not created by the deployment ({sorted(KNOWN_POOLS)})"
            )
    return problems


def test_the_dags_folder_has_dag_files() -> None:
    assert DAG_FILES, f"no DAG files in {DAGS}: expected at least dags/ingest_market_data.py"


def test_the_dagbag_imports_every_file_without_errors(parsed_dagbag) -> None:
    errors = parsed_dagbag.import_errors
    report = "\n".join(f"--- {path}\n{error}" for path, error in sorted(errors.items()))
    print(report)
    assert not errors, f"{len(errors)} DAG file(s) failed to import:\n{report}"
    assert parsed_dagbag.dag_ids, f"no DAGs found in {DAGS}"
    assert "ingest_market_data" in parsed_dagbag.dag_ids
    files_with_dags = {Path(parsed_dagbag.get_dag(i).fileloc).resolve() for i in parsed_dagbag.dag_ids}
    assert not [p.name for p in DAG_FILES if p.resolve() not in files_with_dags], "files without a DAG"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_every_dag_follows_the_project_rules(parsed_dagbag, path: Path) -> None:
    dags = [
        parsed_dagbag.get_dag(i)
        for i in parsed_dagbag.dag_ids
        if Path(parsed_dagbag.get_dag(i).fileloc).resolve() == path.resolve()
    ]
    assert dags, f"{path.name} defines no DAG (or failed to import)"
    problems = [p for dag in dags for p in dag_problems(dag)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_every_dag_file_is_thin_and_parses_cheaply(path: Path) -> None:
    problems = dag_file_problems(path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_every_dag_file_imports_alone_under_the_pinned_airflow(path: Path) -> None:
    """A fresh interpreter with only include/ on the path, as in the Airflow image: no heavy module may
    be loaded, even indirectly through derivlake, while the file is parsed."""
    pin = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    code = (
        "import json, runpy, sys, warnings, airflow\n"
        "with warnings.catch_warnings(record=True) as warned:  # the filters a worker has\n"
        f"    runpy.run_path({str(path)!r})\n"
        f"heavy = sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules)\n"
        "print(json.dumps([airflow.__version__, heavy, [f'{w.category.__name__}: {w.message}' for w in warned]]))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, f"{path.name} does not import:\n{out.stderr[-3000:]}"
    version, heavy, warned = json.loads(out.stdout.strip().splitlines()[-1])
    assert pin and version == pin.group(1), f"Airflow {version} is not the pinned {pin and pin.group(1)}"
    assert not heavy, f"parsing {path.name} loads {heavy}: import them inside the tasks"
    # a worker parses the file before every task: a warning here is in every task log of the DAG
    assert not warned, f"parsing {path.name} warns (in every task log): {warned}"


def test_the_file_checker_catches_fat_dag_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad_dag.py"
    bad.write_text(
        "import pandas as pd\n"
        "from airflow.sdk import dag, task\n"
        "@dag(schedule=None)\n"
        "def bad():\n"
        "    import duckdb\n"
        "    @task\n"
        "    def t():\n"
        "        import pyarrow  # fine: runs in the worker\n"
        "    t()\n"
        "bad()\n" + "# padding\n" * MAX_LINES
    )
    problems = " | ".join(dag_file_problems(bad))
    for expected in (
        "lines >",
        "bad_dag.py:1: imports pandas",
        "bad_dag.py:5: imports duckdb",
        "max_active_runs",
    ):
        assert expected in problems, problems
    assert "pyarrow" not in problems
    good = tmp_path / "good_dag.py"
    good.write_text(
        "from typing import TYPE_CHECKING\n"
        "from airflow.sdk import dag, task\n"
        "if TYPE_CHECKING:\n"
        "    import pandas\n"
        "@dag(schedule='@daily', max_active_runs=1)\n"
        "def good():\n"
        "    @task\n"
        "    def t():\n"
        "        import duckdb\n"
        "    t()\n"
        "good()\n"
    )
    assert dag_file_problems(good) == []


def test_the_dag_checker_catches_careless_dags() -> None:
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, Param

    params = {"reason": Param("", type="string", description="only reasons starting with this"),
              "dry_run": Param(False, type="boolean")}  # fmt: skip
    with DAG("careless", schedule=None, catchup=True, params=params) as careless:
        EmptyOperator(task_id="t", retries=0, pool="nowhere")
    problems = " | ".join(dag_problems(careless))
    for expected in ("no doc_md", "no tags", "schedule=None", "catchup=True", "owner 'airflow'", "retries=0",
                     "execution_timeout=None", "pool 'nowhere'", "param dry_run has no description",
                     "param reason is a string that may not be null"):  # fmt: skip
        assert expected in problems, problems

    with DAG(
        "careful",
        schedule=timedelta(minutes=5),
        catchup=False,
        max_active_runs=1,
        tags=["x"],
        doc_md="A careful DAG: what it does, its inputs and outputs, how to rerun it.",
        default_args={"owner": "desk", "retries": 1, "execution_timeout": timedelta(minutes=5)},
        params={"reason": Param(None, type=["null", "string"], description="empty: all")},
    ) as careful:
        EmptyOperator(task_id="t")
    assert dag_problems(careful) == []
