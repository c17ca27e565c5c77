"""
### End-of-day options chain
Builds the chain of business day **D** = [D-1 08:00, D 08:00) UTC once every partition of the ticker, trade
and index topics has passed D 08:00 in the lake or is quiet (at its log end on the broker): `reports.options_chain`
(a row per series alive at 08:00), `reports.options_chain_expiry`, CSV + HTML (smiles, ATM term structure, OI
by strike) under `$DERIVLAKE_HOME/reports/chain/<D>/`. Rerunning a date replaces it. Param `as_of_date`
(YYYY-MM-DD), empty = the business day that ended at this run's 08:00. Same code: `python -m derivlake report chain --date D`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, BaseSensorOperator, Param, PokeReturnValue, dag, task

from derivlake.config import ChainGateSettings

CHAIN = Asset("lake://reports/options_chain")
READS = [Asset(f"lake://market/{t}") for t in ("options_ticker", "trades", "index_prices")]
GATE = ChainGateSettings.from_env()


class LakeComplete(BaseSensorOperator):
    """Wait, without a worker slot, until ticker, trades, index are in the lake past D 08:00; XCom: D.
    (A sensor class, not @task.sensor: the provider's PythonSensor logs a deprecation in every task.)"""

    def poke(self, context: Any) -> PokeReturnValue:
        from derivlake.dag_params import reject_unknown_conf
        from derivlake.reports.chain_task import poke_chain_gate

        reject_unknown_conf(context)
        return poke_chain_gate(context)


@dag(
    schedule="5 8 * * *",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["derivlake", "eod", "options"],
    default_args={"owner": "derivlake", "retries": 2, "retry_delay": timedelta(minutes=2),
                  "execution_timeout": timedelta(minutes=30)},
    params={"as_of_date": Param(None, type=["null", "string"], format="date",
                                description="business date D (YYYY-MM-DD); empty: the run's business day")},
)  # fmt: skip
def eod_options_chain() -> None:
    gate = LakeComplete(
        task_id="lake_complete", poke_interval=GATE.poke_s, timeout=GATE.timeout_s + 2 * GATE.poke_s,
        mode="reschedule", logger_name="derivlake.chain_gate",  # not the DAG file's mangled module name
    )  # fmt: skip

    @task(inlets=READS, outlets=[CHAIN])  # inlets: the lineage the Assets view shows
    def build(as_of: str, **context: Any) -> dict:
        """Build and store the chain; the asset event carries the counts and the file paths."""
        from derivlake.reports.chain_task import build_chain_task

        return build_chain_task(as_of, context, CHAIN)

    build(gate.output)


eod_options_chain()
