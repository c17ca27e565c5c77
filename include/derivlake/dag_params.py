"""The DAG params' one check that Airflow does not make: a run's conf key that no param declares.

Airflow validates the declared params at trigger time (type, enum, format, bounds) and accepts any
other key, unread: a misspelled `as_of_dat` built the default business day, a `reset_offset` drained
without the reset, each run a success. Every task calls this first, so such a run fails at once, before
it reads or writes anything, naming the key. Airflow is imported inside the function.
"""

from __future__ import annotations

from typing import Any


def unknown_conf_keys(conf: dict[str, Any] | None, declared: set[str]) -> list[str]:
    return sorted(set(conf or {}) - declared)


def reject_unknown_conf(context: dict[str, Any]) -> None:
    """Fail the task, without retries, when the run's conf has a key the DAG declares no param for."""
    dag = context.get("dag")
    if dag is None:  # called outside a task (the task bodies' own tests): nothing to check against
        return
    from airflow.sdk.exceptions import AirflowFailException

    declared = set(dag.params.keys())  # the DAG's own: the context's params also hold the conf's keys
    unknown = unknown_conf_keys(getattr(context.get("dag_run"), "conf", None), declared)
    if unknown:
        accepted = ", ".join(sorted(declared)) or "none"
        raise AirflowFailException(
            f"unknown param {', '.join(unknown)} in the run's conf: {dag.dag_id} takes {accepted}; "
            "nothing was done (trigger it again with the param's name as spelled)"
        )
