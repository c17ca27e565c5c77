"""
### End-of-day margin
Runs when the options chain of a business day **D** lands (the chain asset). For every desk account and
margin currency: positions from all fills before D 08:00 UTC, marked from the chain (options) and the last
tickers (futures); equity = deposits - fees + fill cash flows + position value; Deribit standard margin,
the scenario-grid portfolio margin and SPAN, with utilisation and a margin-call flag. Writes `reports.margin_accounts`,
`reports.margin_positions`, CSV + HTML under `$DERIVLAKE_HOME/reports/margin/<D>/`. Rerunning a date
replaces it. Param `as_of_date` (YYYY-MM-DD), empty = the chain's date. Same code: `python -m derivlake report margin --date D`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, Param, dag, task

CHAIN = Asset("lake://reports/options_chain")
MARGIN = Asset("lake://reports/margin")
READS = [
    Asset(f"lake://{t}")
    for t in (
        "desk/fills",
        "desk/transfers",
        "market/derivative_ticker",
        "market/index_prices",
        "market/instruments",
    )
]


@dag(
    schedule=[CHAIN],
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["derivlake", "eod", "margin"],
    default_args={"owner": "derivlake", "retries": 2, "retry_delay": timedelta(minutes=2),
                  "execution_timeout": timedelta(minutes=30)},
    params={"as_of_date": Param(None, type=["null", "string"], format="date",
                                description="business date D (YYYY-MM-DD); empty: the chain's date")},
)  # fmt: skip
def eod_margin() -> None:
    @task(inlets=[CHAIN, *READS], outlets=[MARGIN])
    def build(**context: Any) -> dict:
        """Build and store the margin report; the asset event carries the counts and the file paths."""
        from derivlake.dag_params import reject_unknown_conf
        from derivlake.reports.event_task import build_on_event
        from derivlake.reports.margin import ChainMissingError, build_margin

        reject_unknown_conf(context)
        return build_on_event(
            context, CHAIN, MARGIN, lambda s, d: build_margin(s, d).summary(), (ChainMissingError,)
        )

    build()


eod_margin()
