"""Real Airflow on a throwaway SQLite metadata DB, configured before Airflow is first imported.

Airflow reads its configuration when `airflow` is first imported, so the environment is set here at
module import (pytest imports this conftest before any test module of tests/dags/). Fixtures:

- `airflow_db` (session): the metadata DB created once per session, plus the project's pools;
  returns AIRFLOW_HOME. Request it in any test that runs `dag.test()` or touches the metadata DB.
- `dagbag` (per test): a fresh DagBag of the repo's `dags/` that has no import errors; fetch DAGs
  with `dagbag.get_dag(dag_id)`. `load_dagbag()` gives one with its import errors for inspection.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = ROOT / "dags"
AIRFLOW_HOME = tempfile.mkdtemp(prefix="derivlake-airflow-")
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)

AIRFLOW_TEST_ENV = {
    "AIRFLOW_HOME": AIRFLOW_HOME,
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
}
if "airflow" in sys.modules:  # too late: Airflow already read another configuration (and another DB)
    raise RuntimeError(
        "airflow was imported before tests/dags/conftest.py set AIRFLOW_HOME; import airflow lazily "
        "(inside tests or fixtures) in test modules and conftests collected before tests/dags/"
    )
os.environ.update(AIRFLOW_TEST_ENV)


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A fresh metadata DB (created from the ORM and stamped, as `airflow db migrate` does on an empty
    DB), once per session, with the `kafka_drains` pool the ingest DAG uses; returns AIRFLOW_HOME."""
    from airflow.models.pool import Pool
    from airflow.utils import db

    from derivlake.config import default_topics

    assert os.environ["AIRFLOW_HOME"] == AIRFLOW_HOME, "AIRFLOW_HOME changed after the conftest set it"
    db.initdb()
    Pool.create_or_update_pool(
        "kafka_drains", slots=len(default_topics()), description="one slot per topic", include_deferred=False
    )
    return AIRFLOW_HOME


def load_dagbag():
    """A DagBag of the repo's `dags/`, as the dag-processor parses it (`include/` is on sys.path)."""
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3.x
    except ImportError:  # pragma: no cover - older layout
        from airflow.models.dagbag import DagBag
    # no include_examples argument in 3.3: AIRFLOW__CORE__LOAD_EXAMPLES=False above keeps examples out
    return DagBag(dag_folder=str(DAGS_FOLDER))


def format_import_errors(import_errors: dict) -> str:
    return "\n".join(f"--- {path}\n{error}" for path, error in sorted(import_errors.items()))


@pytest.fixture
def dagbag(airflow_db):
    """A fresh DagBag per test (`dag.test()` runs must not share DAG objects); fails on import errors."""
    bag = load_dagbag()
    assert not bag.import_errors, "DAG import errors:\n" + format_import_errors(bag.import_errors)
    return bag


@pytest.fixture(scope="session")
def parsed_dagbag(airflow_db):
    """One DagBag for the session, import errors kept, for checks that only read it."""
    return load_dagbag()
