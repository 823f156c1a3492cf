"""`spanline reprice` as a user runs it: its own process, configured by environment, on a chDB
path this test process has closed (chDB admits one open path per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from spanline.sql.client import connect
from spanline.streams.batcher import Batch
from tests.test_reprice import CORRECTION, START, UNTIL, batches, stored_database

__all__ = ["batches"]  # the module-scoped fixture, shared with tests/test_reprice.py


def test_the_command_prints_the_summary_per_model_and_day(
    tmp_path: Path, batches: list[tuple[Batch, pd.DataFrame]]
) -> None:
    """`spanline reprice` as a user runs it: its own process, configured by environment."""
    path = tmp_path / "chdb"
    own = connect(f"chdb://{path}")
    try:
        stored_database(own, "spanline", batches)
    finally:
        own.close()
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(CORRECTION, encoding="utf-8")
    env = {
        **os.environ,
        "SPANLINE_CLICKHOUSE_URL": f"chdb://{path}",
        "SPANLINE_PRICE_OVERRIDES_FILE": str(overrides),
        "SPANLINE_HOME": str(tmp_path / "home"),
        "COLUMNS": "160",
    }
    since, until = START.strftime("%Y-%m-%dT%H:%M"), UNTIL.strftime("%Y-%m-%dT%H:%MZ")

    def run(*extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "spanline", "reprice", "--since", since, "--until", until, *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    dry = run("--dry-run", "--chunk-minutes", "15")
    assert "dry run: nothing written" in dry and "would change" in dry and "acme-llm-1" in dry
    first = run()
    assert "acme-llm-1" in first and "gpt-4o-mini" in first and "+40" in first and "total" in first
    assert START.strftime("%Y-%m-%d") in first
    assert "nothing to reprice" in run()
    bad = subprocess.run(
        [sys.executable, "-m", "spanline", "reprice", "--since", "last tuesday"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "--since takes an ISO 8601 date" in bad.stdout
