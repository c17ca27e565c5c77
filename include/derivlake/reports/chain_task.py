"""eod_options_chain's task bodies: the gate's poke (params -> business day, errors -> Airflow's
failure kinds) and the build (summary -> asset event). Airflow is imported inside the functions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from derivlake.config import LakeSettings

if TYPE_CHECKING:
    from airflow.sdk import PokeReturnValue


def poke_chain_gate(context: dict[str, Any]) -> PokeReturnValue:
    """One poke of the gate; a PokeReturnValue whose XCom is the business day D (ISO).

    A bad date fails the task at once (retries would not fix it); a gate out of patience is a sensor
    timeout, naming the lagging partitions. The patience counts from the first poke of the try: the
    sensor reschedules, so a poke's own start is not when the wait began."""
    from airflow.sdk import PokeReturnValue
    from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

    from derivlake.ingest.airflow_task import kafka_from_connection
    from derivlake.reports.completeness import AsOfDateError, GateTimeout, poke_gate

    ti, params = context["ti"], context.get("params") or {}
    run_ts = context["dag_run"].run_after  # 08:05 of D when scheduled, whatever the logical date
    first = ti.get_first_reschedule_date(context) or ti.start_date or datetime.now(UTC)
    waited_s = (datetime.now(UTC) - first).total_seconds()
    try:  # the broker of the kafka_default connection tells quiet partitions
        done, as_of = poke_gate(params.get("as_of_date"), run_ts, waited_s, kafka=kafka_from_connection())
    except AsOfDateError as exc:
        raise AirflowFailException(str(exc)) from None
    except GateTimeout as exc:
        raise AirflowSensorTimeout(str(exc)) from None
    return PokeReturnValue(is_done=done, xcom_value=as_of.isoformat())


def build_chain_task(as_of: str, context: dict[str, Any], asset: object) -> dict[str, Any]:
    """Build and store the chain of D; the asset event carries its counts and file paths."""
    from derivlake.reports.chain import build_chain

    summary = build_chain(LakeSettings.from_env(), date.fromisoformat(as_of)).summary()
    context["outlet_events"][asset].extra = summary
    return summary
