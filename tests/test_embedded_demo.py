"""The README's first command, for real: `spanline demo` on the embedded default, twice; each run
replays a provider outage after its baseline minutes and shows the page from the ``alerts`` table.

The second run starts a new in-memory tansu broker (topics recreated, offsets back at 0)
against the same chDB data: its spans must be stored too, not taken for redeliveries of the
first run's batches. The demo queries ClickHouse through the running worker, so this also
covers the CLI querying while the worker owns the chDB path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.stack import free_port


def run_demo(home: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spanline", "demo", "--minutes", "2", "--rate", "5"],
        env=env, capture_output=True, text=True, timeout=400,
    )


def test_demo_runs_twice_on_the_same_home(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANLINE_")}
    env.update({
        "SPANLINE_HOME": str(tmp_path),
        "SPANLINE_EMBEDDED_KAFKA_PORT": str(free_port()),
        "SPANLINE_COLLECTOR_PORT": str(free_port()),
        "SPANLINE_WORKER_WEB_PORT": str(free_port()),
    })
    for attempt in (1, 2):
        result = run_demo(tmp_path, env)
        log = (tmp_path / "up.log").read_text() if (tmp_path / "up.log").exists() else ""
        assert result.returncode == 0, f"run {attempt}:\n{result.stdout}\n{result.stderr}\n{log[-3000:]}"
        for title in ("Spend by model", "Spend by tenant", "LLM latency by model", "Cache hit rate by layer"):
            assert title in result.stdout
        assert "gpt-4o" in result.stdout and "acme" in result.stdout
        # the replayed provider outage paged, as the ClickHouse alerts table shows
        alerts = result.stdout.split("Alerts (ClickHouse alerts table)")[1]
        page = next(line for line in alerts.splitlines() if "error_rate_critical" in line)
        assert "firing" in page and "critical" in page and "provider-outage" in page and "provider_errors" in page
        assert "provider=anthropic" in alerts
        assert (tmp_path / "report.html").exists()
    assert (tmp_path / "api_keys.json").stat().st_mode & 0o077 == 0
