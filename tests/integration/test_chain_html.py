"""The chain's HTML report is self-contained and renders its charts in headless Chromium."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
from derivlake.reports.chain import build_chain
from tests.conftest import require_or_skip
from tests.integration.test_chain_build import D, seed_day

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def report(lake_settings: LakeSettings) -> Path:
    con = open_lake(lake_settings)
    try:
        seed_day(con)
    finally:
        con.close()
    result = build_chain(lake_settings, D)
    assert result.html_path is not None and result.html_path.name == "options_chain_2024-03-08.html"
    return result.html_path


def test_html_is_self_contained_with_an_svg_per_underlying(report: Path) -> None:
    html = report.read_text()
    for underlying in ("BTC", "SOL_USDC"):
        section = html.split(f'id="u-{underlying}"', 1)[1].split("</section>", 1)[0]
        assert section.count("<svg") == 3, underlying  # smile, term structure, OI by strike
        assert 'class="smile"' in section and 'class="term"' in section and 'class="oi"' in section
    assert "<polygon" in html, "bid/ask IV band"
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "no network resources"
    assert "<script" not in html


def test_html_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    from PIL import Image

    if not CHROMIUM.exists():
        require_or_skip(
            "DERIVLAKE_REQUIRE_CHROMIUM",
            "the HTML report in a browser",
            "no /usr/bin/chromium (apt-get install -y chromium)",
        )
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "options_chain_2024-03-08.png"
    shot.unlink(missing_ok=True)
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}", "--window-size=1400,2000", report.as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert shot.exists(), f"no screenshot; chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 30_000, "a page with charts, not a blank one"
    # a blank or error page is a handful of colours; the charts' lines, bands and text are hundreds
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50, f"{len(colours)} colours: a blank page"
