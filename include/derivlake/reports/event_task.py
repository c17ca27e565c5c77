"""The task bodies of the DAGs that run on another product's asset (eod_margin on the chain,
regulatory_exports on the margin report): which business day, and the build with Airflow's failure kinds.
Airflow is imported inside the functions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from derivlake.config import LakeSettings


def trigger_day(context: dict[str, Any], trigger: object) -> str | None:
    """The `as_of_date` to build: the param when given, else the newest triggering event's day."""
    params = context.get("params") or {}
    if (params.get("as_of_date") or "").strip():
        return params["as_of_date"]
    events = (context.get("triggering_asset_events") or {}).get(trigger) or []
    days = [e.extra.get("as_of_date") for e in events if e.extra and e.extra.get("as_of_date")]
    return max(days) if days else None


def build_on_event(
    context: dict[str, Any],
    trigger: object,
    asset: object,
    build: Callable[[LakeSettings, date], dict[str, Any]],
    input_errors: tuple[type[Exception], ...],
) -> dict[str, Any]:
    """Resolve the day (a bad one fails at once), run `build` (its summary becomes the asset event's
    extra); the `input_errors` it raises fail at once too: a retry cannot build a missing input."""
    from airflow.sdk.exceptions import AirflowFailException

    from derivlake.lake.catalog import open_lake
    from derivlake.reports.completeness import (
        AsOfDateError,
        business_day_of,
        first_quote_time,
        resolve_as_of_date,
    )

    settings = LakeSettings.from_env()
    run_after = context["dag_run"].run_after.replace(tzinfo=None)
    with open_lake(settings, read_only=True) as con:
        first_quote = first_quote_time(con)
    try:
        as_of = resolve_as_of_date(
            trigger_day(context, trigger), default=business_day_of(run_after),
            now=datetime.now(UTC).replace(tzinfo=None), first_quote=first_quote,
        )  # fmt: skip
        summary = build(settings, as_of)
    except (AsOfDateError, *input_errors) as exc:
        raise AirflowFailException(str(exc)) from None
    context["outlet_events"][asset].extra = summary
    return summary
