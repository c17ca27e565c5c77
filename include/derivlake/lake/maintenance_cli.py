"""`python -m derivlake maintain [--target-file-size-mb N] [--retention-days D] [--grace-hours H]
[--orphan-grace-hours H]`."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

from derivlake.config import LakeSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target-file-size-mb", type=int, default=128, help="merged files up to this size (>= 1)"
    )
    parser.add_argument(
        "--retention-days", type=float, default=7.0, help="snapshots kept for time travel (>= 0)"
    )
    parser.add_argument("--grace-hours", type=float, default=1.0, help="unreferenced files kept this long")
    parser.add_argument(
        "--orphan-grace-hours",
        type=float,
        default=24.0,
        help="files no transaction committed (left by killed writers) kept this long; "
        "it must outlast any running drain or merge",
    )


def run(args: argparse.Namespace) -> int:
    from derivlake.lake.catalog import require_lake
    from derivlake.lake.maintenance import MaintenanceConfig, maintain

    config = MaintenanceConfig(
        target_file_size_bytes=args.target_file_size_mb * 1024 * 1024,
        snapshot_retention=timedelta(days=args.retention_days),
        file_grace=timedelta(hours=args.grace_hours),
        orphan_grace=timedelta(hours=args.orphan_grace_hours),
    )
    settings = LakeSettings.from_env()
    require_lake(settings)  # maintenance has nothing to do in a lake no drain has begun
    print(json.dumps(maintain(settings, config).as_metadata(), indent=2, default=str))
    return 0
