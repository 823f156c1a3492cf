"""`spanline demo` ends by writing the report through the running service (the worker owns the
embedded chDB, so the report's queries go through its query API) and prints the file's path;
headless Chromium shows charts in it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.support.stack import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_demo_writes_a_report_that_renders(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANLINE_")} | {
        "SPANLINE_HOME": str(tmp_path),
        "SPANLINE_EMBEDDED_KAFKA_PORT": str(free_port()),
        "SPANLINE_COLLECTOR_PORT": str(free_port()),
        "SPANLINE_WORKER_WEB_PORT": str(free_port()),
    }
    done = subprocess.run([sys.executable, "-m", "spanline", "demo", "--minutes", "2", "--rate", "5"],
                          env=env, capture_output=True, text=True, timeout=400)
    log = (tmp_path / "up.log").read_text() if (tmp_path / "up.log").exists() else ""
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{log[-3000:]}"
    match = re.search(r"report with (\d+) panels: (\S+?report\.html)", done.stdout.replace("\n", ""))
    assert match, done.stdout
    report = Path(match.group(2))
    assert report == tmp_path / "report.html" and report.exists() and int(match.group(1)) >= 40
    html = report.read_text(encoding="utf-8")
    assert "query failed" not in html and html.count("<polyline") >= 15

    assert Path(CHROMIUM).exists(), "Debian's chromium is required (.ci/run installs it: apt-get install -y chromium)"
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1400,1800", report.as_uri()],
                   capture_output=True, timeout=180, check=True)
    pixels = Image.open(shot).convert("RGB")
    series_blue = sum(n for n, rgb in pixels.getcolors(maxcolors=1 << 20) or [] if rgb == (0x32, 0x74, 0xD9))
    assert series_blue > 500, "no chart lines in the screenshot"
