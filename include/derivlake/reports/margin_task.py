"""eod_margin's task body: which business day (param, else the chain event that triggered the run, else
the run's own business day) and the build (summary -> asset event). Airflow is imported inside."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from derivlake.config import LakeSettings


def margin_day(context: dict[str, Any], chain_asset: object) -> str | None:
    """The `as_of_date` to build: the param when given, else the newest triggering chain event's day."""
    params = context.get("params") or {}
    if (params.get("as_of_date") or "").strip():
        return params["as_of_date"]
    events = (context.get("triggering_asset_events") or {}).get(chain_asset) or []
    days = [e.extra.get("as_of_date") for e in events if e.extra and e.extra.get("as_of_date")]
    return max(days) if days else None


def build_margin_task(context: dict[str, Any], chain_asset: object, asset: object) -> dict[str, Any]:
    """Build and store the margin report; a bad date or a missing chain fails at once (no retry helps)."""
    from airflow.sdk.exceptions import AirflowFailException

    from derivlake.lake.catalog import open_lake
    from derivlake.reports.completeness import (
        AsOfDateError,
        business_day_of,
        first_quote_time,
        resolve_as_of_date,
    )
    from derivlake.reports.margin import ChainMissingError, build_margin

    settings = LakeSettings.from_env()
    run_after = context["dag_run"].run_after
    now = datetime.now(UTC).replace(tzinfo=None)
    with open_lake(settings, read_only=True) as con:
        first_quote = first_quote_time(con)
    try:
        as_of = resolve_as_of_date(
            margin_day(context, chain_asset), default=business_day_of(run_after.replace(tzinfo=None)),
            now=now, first_quote=first_quote,
        )  # fmt: skip
        summary = build_margin(settings, as_of).summary()
    except (AsOfDateError, ChainMissingError) as exc:
        raise AirflowFailException(str(exc)) from None
    context["outlet_events"][asset].extra = summary
    return summary
