"""
### Regulatory exports
Runs when the margin report of a business day **D** lands (the margin asset). Files under
`$DERIVLAKE_HOME/exports/<D>/`: the MiFIR RTS 22 transaction report of the desk's executions in
[D-1 08:00, D 08:00) UTC (ISO 20022 auth.016 XML, validated against the project's XSD and business rules)
and the CFTC Part 17 records of its reportable positions at D 08:00, each with a manifest (SHA-256, record
count, generation time). A rerun with the same data files nothing and rewrites the same bytes; changed
fills file the next sequence (cancellations plus new records). Param `as_of_date` (YYYY-MM-DD), empty =
the margin report's date. Same code: `python -m derivlake report exports --date D`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, Param, dag, task

MARGIN = Asset("lake://reports/margin")
FILLS = Asset("lake://desk/fills")
INSTRUMENTS = Asset("lake://market/instruments")  # each fill's classification
EXPORTS = Asset("lake://exports/regulatory")


@dag(
    schedule=[MARGIN],
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["derivlake", "eod", "regulatory"],
    default_args={"owner": "derivlake", "retries": 2, "retry_delay": timedelta(minutes=2),
                  "execution_timeout": timedelta(minutes=30)},
    params={"as_of_date": Param(None, type=["null", "string"], format="date",
                                description="business date D (YYYY-MM-DD); empty: the margin report's date")},
)  # fmt: skip
def regulatory_exports() -> None:
    @task(inlets=[MARGIN, FILLS, INSTRUMENTS], outlets=[EXPORTS])
    def export(**context: Any) -> dict:
        """File the day's RTS 22 and CFTC files; the asset event lists them with their sequences."""
        from derivlake.config import ConfigError
        from derivlake.dag_params import reject_unknown_conf
        from derivlake.regulatory.exports import ExportError, build_exports
        from derivlake.reports.event_task import build_on_event

        reject_unknown_conf(context)
        errors = (ExportError, ConfigError)  # a retry fixes neither: fail at once
        return build_on_event(context, MARGIN, EXPORTS, lambda s, d: build_exports(s, d).summary(), errors)

    export()


regulatory_exports()
