"""`python -m derivlake report chain --date D`: the DAG's code path by hand, paths and counts printed."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from derivlake.cli import main
from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
from derivlake.lake.status import read_status
from tests.integration.test_chain_build import D, seed_day


@pytest.fixture
def lake(lake_in_env: LakeSettings) -> LakeSettings:
    con = open_lake(lake_in_env)
    try:
        seed_day(con)
    finally:
        con.close()
    return lake_in_env


def test_report_chain_prints_paths_and_counts(lake: LakeSettings, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", "chain", "--date", D.isoformat()]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "reports.options_chain 2024-03-08: 31 rows" in out
    assert "reports.options_chain_expiry 2024-03-08: 4 rows" in out
    folder = lake.reports_dir / "chain" / "2024-03-08"
    assert str(folder / "options_chain_2024-03-08.csv") in out
    assert str(folder / "options_chain_2024-03-08.html") in out
    # the lake status lists it (and the one-series report of the day before that seed_day stored,
    # with no underlying and no file here), newest first
    chains = read_status(lake).chains
    assert [(c.as_of_date, c.series, c.underlyings, c.html) for c in chains] == [
        (D, 31, 2, True), (D - timedelta(days=1), 1, 0, False)
    ]  # fmt: skip
    assert chains[0].snapshot == datetime(2024, 3, 8, 8)


def test_report_chain_rejects_bad_dates(lake: LakeSettings, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", "chain", "--date", "2024-02-30"]) == 1
    assert "is not a date" in capsys.readouterr().err
    assert main(["report", "chain", "--date", "2024-03-01"]) == 1
    assert (
        "before the lake's first data: its snapshot 2024-03-01 08:00 UTC precedes the first option quote "
        "(2024-03-07 " in capsys.readouterr().err
    )
