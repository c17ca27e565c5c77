"""
### replay_quarantine
Triggered by hand: moves the quarantined messages that today's normalizer accepts into their tables,
exactly once (each chunk in one lake transaction: the rows, their removal from `ops.quarantine`, the
current reason of those still failing, an `ops.quarantine_replays` record). Use it after naming a
venue's new currency in `DERIVLAKE_EXTRA_CURRENCIES` (on the workers, so the drains take it too), or
after upgrading to a release that fixed a check. `dry_run` only counts. The task's return value and log
say per topic what was examined, released and is still quarantined.
"""

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from derivlake.config import default_topics

KINDS = [t.kind for t in default_topics()]


@dag(
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["derivlake", "ingest"],
    default_args={
        "owner": "derivlake",
        "retries": 1,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(hours=2),
    },
    params={
        "topics": Param(KINDS, type="array", items={"type": "string", "enum": KINDS}, minItems=1,
                        examples=KINDS, description="the topic kinds whose quarantine to replay"),
        # nullable: the UI's form sends an empty field as null, and a plain string would be required there
        "reason": Param(None, type=["null", "string"],
                        description="only the messages whose reason starts with this, e.g. unknown_instrument "
                        "(empty: all)"),
        "dry_run": Param(False, type="boolean", description="only count what would be released"),
    },
)  # fmt: skip
def replay_quarantine() -> None:
    @task
    def topics(**context: Any) -> list[str]:
        from derivlake.dag_params import reject_unknown_conf

        reject_unknown_conf(context)
        return list(dict.fromkeys(context["params"]["topics"]))

    @task(pool="kafka_drains", map_index_template="{{ topic_kind }}")
    def replay(kind: str) -> dict:
        from airflow.sdk import get_current_context

        from derivlake.ingest.quarantine import run_replay_task

        context = get_current_context()
        context["topic_kind"] = kind  # names the mapped task in the UI
        return run_replay_task(kind, context["params"])

    replay.expand(kind=topics())


replay_quarantine()
