"""maintain_lake's task body: params -> config, stats -> asset event."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from derivlake.config import LakeSettings
from derivlake.dag_params import reject_unknown_conf
from derivlake.lake.maintenance import MaintenanceConfig, maintain


def run_maintenance_task(context: dict[str, Any], asset: object) -> dict[str, object]:
    reject_unknown_conf(context)
    params = context.get("params") or {}
    config = MaintenanceConfig(
        target_file_size_bytes=int(params.get("target_file_size_mb", 128)) * 1024 * 1024,
        snapshot_retention=timedelta(days=float(params.get("retention_days", 7))),
        orphan_grace=timedelta(hours=float(params.get("orphan_grace_hours", 24))),
    )
    meta = maintain(LakeSettings.from_env(), config).as_metadata()
    context["outlet_events"][asset].extra = meta
    return meta
