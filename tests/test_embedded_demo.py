"""The README's first command, for real: `spanline demo` on the embedded default, twice; each run
replays a provider outage after its baseline minutes and shows the page from the ``alerts`` table.

The second run starts a new in-memory tansu broker (topics recreated, offsets back at 0)
against the same chDB data: its spans must be stored too, not taken for redeliveries of the
first run's batches. The demo queries ClickHouse through the running worker, so this also
covers the CLI querying while the worker owns the chDB path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.stack import embedded_env, run_demo, up_log_tail

pytestmark = pytest.mark.e2e


def test_demo_runs_twice_on_the_same_home(tmp_path: Path) -> None:
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
        assert (tmp_path / "report.html").exists()
    assert (tmp_path / "api_keys.json").stat().st_mode & 0o077 == 0
