"""What the DAG tests share: one DAG file parsed afresh, and the extras of an asset's events."""

from __future__ import annotations

from pathlib import Path

DAGS = Path(__file__).resolve().parents[2] / "dags"


def load_dag(file_name: str, dag_id: str):
    """Parse the DAG file afresh (DagBag), so the environment a test sets applies; no import errors."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / file_name))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def asset_extras(uri: str) -> list[dict]:
    """The `extra` of every event of the asset, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(
            session.scalars(
                select(AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.uri == uri).order_by(AssetEvent.id)
            ).all()
        )  # fmt: skip
