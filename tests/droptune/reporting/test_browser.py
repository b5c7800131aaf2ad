"""report.html as a reader sees it: opened in headless Chromium with no network at all, then
checked in the DOM (verdict, metric table, charts as images) and in a screenshot (the
verdict's colour, the charts' pixels). Needs Debian's `chromium`; CI installs it and sets
DROPTUNE_REQUIRE_CHROMIUM=1 so that a missing browser fails there instead of skipping."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from droptune.reporting import render_run

pytestmark = pytest.mark.slow

WINDOW = (1200, 5000)
VERDICT_GREEN = (0xDA, 0xFB, 0xE1)  # .passed background
TUNED_BLUE = (0x1F, 0x6F, 0xEB)  # the tuned model's colour in the charts


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    message = "Chromium is not installed (Debian/Ubuntu: apt-get install chromium)"
    if os.environ.get("DROPTUNE_REQUIRE_CHROMIUM"):
        pytest.fail(f"{message}, and DROPTUNE_REQUIRE_CHROMIUM is set")
    pytest.skip(f"{message}; set DROPTUNE_REQUIRE_CHROMIUM=1 to fail instead")


def browse(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Chromium on `page` with every network path closed: a proxy that does not exist for
    everything, loopback included, and no background services."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def pixels_near(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 6) -> int:
    return int((np.abs(image[..., :3].astype(int) - colour).max(axis=-1) <= tolerance).sum())


@pytest.fixture
def page(run_folder: Path) -> Path:
    return Path(render_run(str(run_folder)))


def test_the_dom_has_the_verdict_the_table_and_the_charts(page: Path, tmp_path: Path):
    result = browse(page, tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert "Tuned model is better: deployed" in dom
    assert "accuracy (gate)" in dom and "+0.625" in dom
    for chart in ("deltas", "loss", "confusion", "tokens", "lengths"):
        assert f'id="plot-{chart}"' in dom, chart


def test_the_screenshot_shows_the_verdict_and_the_charts(page: Path, tmp_path: Path):
    from PIL import Image

    shot = tmp_path / "report.png"
    result = browse(page, tmp_path / "profile", f"--screenshot={shot}")
    assert shot.is_file(), result.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[:2] == (WINDOW[1], WINDOW[0])
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 500  # not a blank page
    top = image[:400]
    assert pixels_near(top, VERDICT_GREEN) > 20_000  # the verdict box, near the top
    assert pixels_near(image, TUNED_BLUE, tolerance=30) > 2_000  # the charts were drawn
