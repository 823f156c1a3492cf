"""`spanline demo` ends by writing the report through the running service (the worker owns the
embedded chDB, so the report's queries go through its query API) and prints the file's path;
headless Chromium shows charts in it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.support.stack import embedded_env, run_demo, up_log_tail

pytestmark = pytest.mark.e2e


def test_demo_writes_a_report_that_renders(tmp_path: Path, chromium: str) -> None:
    done = run_demo(embedded_env(tmp_path))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{up_log_tail(tmp_path)}"
    match = re.search(r"report with (\d+) panels: (\S+?report\.html)", done.stdout.replace("\n", ""))
    assert match, done.stdout
    report = Path(match.group(2))
    assert report == tmp_path / "report.html" and report.exists() and int(match.group(1)) >= 40
    html = report.read_text(encoding="utf-8")
    assert "query failed" not in html and html.count("<polyline") >= 15

    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1400,1800",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
    pixels = Image.open(shot).convert("RGB")
    series_blue = sum(n for n, rgb in pixels.getcolors(maxcolors=1 << 20) or [] if rgb == (0x32, 0x74, 0xD9))
    assert series_blue > 500, "no chart lines in the screenshot"
