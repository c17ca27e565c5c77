"""The lake status page in the Airflow UI (Browse > Lake status): what `python -m derivlake status`
prints, for anyone logged in to Airflow. The page reads the lake read-only and asks the brokers of the
`kafka_default` connection for their log ends (the lag); neither is done at import."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import ClassVar

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import requires_access_view
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse

# every route needs a logged-in user allowed to see plugins (the UI's own rule for plugin pages)
app = FastAPI(title="derivlake lake status", dependencies=[Depends(requires_access_view(AccessView.PLUGINS))])


def _read():
    from airflow.models.connection import Connection

    from derivlake.config import LakeSettings
    from derivlake.ingest.airflow_task import kafka_from_connection
    from derivlake.lake.status import read_status

    kafka = kafka_from_connection(lookup=Connection.get_connection_from_secrets)
    return read_status(LakeSettings.from_env(), kafka)


def _problem(exc: Exception) -> str:
    from derivlake.lake.catalog import LakeMissing, short_cause

    if isinstance(exc, LakeMissing):
        return f"No lake yet: {exc}."
    return f"The lake could not be read: {short_cause(exc)}"


@app.get("/", response_class=HTMLResponse)
async def status_page() -> HTMLResponse:
    from derivlake.lake.status import render_html, render_problem

    try:
        status = await asyncio.to_thread(_read)  # DuckDB and librdkafka block: off the event loop
    except Exception as exc:  # the page says what is wrong instead of a bare 500
        return HTMLResponse(render_problem(_problem(exc)), status_code=503)
    return HTMLResponse(render_html(status))


@app.get("/status.json")
async def status_json() -> JSONResponse:
    from fastapi.encoders import jsonable_encoder

    try:
        status = await asyncio.to_thread(_read)
    except Exception as exc:
        return JSONResponse({"error": _problem(exc)}, status_code=503)
    return JSONResponse(jsonable_encoder(status.as_dict()))


async def _report_page(path: Path, what: str) -> HTMLResponse:
    """An end-of-day product's self-contained HTML report, as its DAG wrote it."""
    if not path.is_file():
        raise HTTPException(404, f"no {what} at {path}")
    return HTMLResponse(await asyncio.to_thread(path.read_text))


@app.get("/chain/{as_of}", response_class=HTMLResponse)
async def chain_report(as_of: date) -> HTMLResponse:
    """The options chain of a business date (eod_options_chain)."""
    from derivlake.config import LakeSettings
    from derivlake.reports.chain import chain_file

    return await _report_page(
        chain_file(LakeSettings.from_env().reports_dir, as_of, "html"), "options chain report"
    )


@app.get("/margin/{as_of}", response_class=HTMLResponse)
async def margin_report(as_of: date) -> HTMLResponse:
    """The margin report of a business date (eod_margin)."""
    from derivlake.config import LakeSettings
    from derivlake.reports.margin import margin_html_file

    return await _report_page(margin_html_file(LakeSettings.from_env().reports_dir, as_of), "margin report")


class LakeStatusPlugin(AirflowPlugin):
    name = "derivlake_lake_status"
    fastapi_apps: ClassVar[list[dict]] = [
        {"app": app, "url_prefix": "/lake-status", "name": "derivlake lake status"}
    ]
    external_views: ClassVar[list[dict]] = [
        {
            "name": "Lake status",
            "href": "/lake-status/",
            "url_route": "lake-status",  # shown inside the UI, under Browse
            "destination": "nav",
            "category": "browse",
        }
    ]
