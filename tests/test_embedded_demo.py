"""The README's first command, for real: `spanline demo` on the embedded default, twice; each run
replays a provider outage after its baseline minutes, shows the page from the ``alerts`` table
and ends by writing the report through the running service (the worker owns the embedded chDB,
so the report's queries go through its query API), whose charts headless Chromium draws.

The second run starts a new in-memory tansu broker (topics recreated, offsets back at 0)
against the same chDB data: its spans must be stored too, not taken for redeliveries of the
first run's batches. The demo queries ClickHouse through the running worker, so this also
covers the CLI querying while the worker owns the chDB path.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.support.stack import embedded_env, run_demo, up_log_tail

pytestmark = pytest.mark.e2e


def test_demo_runs_twice_on_the_same_home(tmp_path: Path, chromium: str) -> None:
    env = embedded_env(tmp_path)
    for attempt in (1, 2):
        result = run_demo(env)
        assert result.returncode == 0, f"run {attempt}:\n{result.stdout}\n{result.stderr}\n{up_log_tail(tmp_path)}"
        for title in ("Spend by model", "Spend by tenant", "LLM latency by model", "Cache hit rate by layer"):
            assert title in result.stdout
        assert "gpt-4o" in result.stdout and "acme" in result.stdout
        # the replayed provider outage paged, as the ClickHouse alerts table shows
        alerts = result.stdout.split("Alerts (ClickHouse alerts table)")[1]
        page = next(line for line in alerts.splitlines() if "error_rate" in line)
        assert "firing" in page and "critical" in page and "provider-outage" in page and "provider_errors" in page
        assert "provider=anthropic" in alerts
        assert_report_renders(result.stdout, tmp_path, chromium)
    assert (tmp_path / "api_keys.json").stat().st_mode & 0o077 == 0


def assert_report_renders(stdout: str, home: Path, chromium: str) -> None:
    """The demo printed the report's path; the file has its panels and Chromium draws chart lines."""
    match = re.search(r"report with (\d+) panels: (\S+?report\.html)", stdout.replace("\n", ""))
    assert match, stdout
    report = Path(match.group(2))
    assert report == home / "report.html" and report.exists() and int(match.group(1)) >= 40
    html = report.read_text(encoding="utf-8")
    assert "query failed" not in html and html.count("<polyline") >= 15

    shot = home / "report.png"
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
