"""`spanline sql list|show|run|query` on simulated traffic stored by a real stack.

The worker owns its chDB path, so every query here goes through the worker's query API
(the embedded mode's CLI path), with parameters crossing it as JSON. Figures are checked
against direct aggregates over the raw spans.
"""

from __future__ import annotations

import csv
import functools
import io
import operator
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from spanline.cli import main
from spanline.sql.library import load_library
from tests.support.kafka_broker import TansuBroker
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

#: Queries that must find rows in a few minutes of the simulated RAG + agent workload: all but the
#: canary comparison (the simulator sends no canary traffic by default).
NON_EMPTY = set(load_library()) - {"canary_vs_control"}


@pytest.fixture(scope="module")
def stack(tansu_kafka: TansuBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tansu_kafka.bootstrap_servers, tmp_path_factory.mktemp("sql-cli"))
    stack.start_worker()
    stack.start_receiver()
    simulated = run_cli(stack, "simulate", "--minutes", "4", "--rate", "4")
    assert simulated.returncode == 0, simulated.stderr
    accepted = int(simulated.stdout.split("sent ")[1].split(" spans")[0].replace(",", ""))
    stack.wait_for_count("SELECT count() FROM {db}.spans", accepted)
    yield stack
    stack.close()


@pytest.fixture
def stack_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The CLI in this process sees the stack's configuration."""
    for name in [k for k in os.environ if k.startswith("SPANLINE_")]:
        monkeypatch.delenv(name)
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    return stack


def run_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANLINE_")} | stack.env
    return subprocess.run(
        [sys.executable, "-m", "spanline", *args], env=env, capture_output=True, text=True, timeout=300
    )


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    main(["sql", *args, "--format", "json"])
    return orjson.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", sorted(load_library()))
def test_every_library_query_runs_through_the_cli(
    stack_env: Stack, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    records = cli_json(capsys, "run", name)
    if name in NON_EMPTY:
        assert records, f"{name} found no rows in the simulated traffic"
    columns = set(records[0]) if records else set()
    csv_text = run_csv(capsys, name)
    assert len(csv_text) == len(records) + 1
    assert not records or set(csv_text[0]) == columns


def run_csv(capsys: pytest.CaptureFixture[str], name: str) -> list[list[str]]:
    main(["sql", "run", name, "--format", "csv"])
    return list(csv.reader(io.StringIO(capsys.readouterr().out)))


def test_spend_by_day_adds_up_to_the_raw_spend_per_tenant(stack_env: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    until = datetime.now(UTC) + timedelta(minutes=1)
    since = until - timedelta(days=1)
    window = [f"since={since.isoformat()}", f"until={until.isoformat()}"]
    raw = stack_env.query(
        "SELECT tenant_id, sum(cost_usd) FROM {db}.spans WHERE start_time >= {since:DateTime64(3, 'UTC')} "
        "AND start_time < {until:DateTime64(3, 'UTC')} AND model_requested != '' GROUP BY tenant_id",
        since=since,
        until=until,
    )
    expected = {tenant: cost for tenant, cost in raw.rows}
    assert set(expected) == {"acme", "globex"}
    for tenant, cost in expected.items():
        records = cli_json(
            capsys,
            "run",
            "spend_by_day",
            *functools.reduce(operator.iadd, (["--param", p] for p in window), []),
            "--param",
            f"tenant={tenant}",
        )
        assert records and {r["tenant_id"] for r in records} == {tenant}
        assert sum(float(r["spend_usd"]) for r in records) == pytest.approx(cost, rel=1e-9)


def test_list_show_and_the_console_script(stack: Stack) -> None:
    listed = run_cli(stack, "sql", "list")
    assert listed.returncode == 0, listed.stderr
    for name in load_library():
        assert name in listed.stdout
    shown = run_cli(stack, "sql", "show", "cost_pareto")
    assert shown.returncode == 0 and f"{stack.settings.clickhouse_database}.spans" in shown.stdout
    assert "{since:DateTime64(3, 'UTC')}" in shown.stdout
    table = run_cli(stack, "sql", "run", "error_rates", "--param", "tenant=acme")
    assert table.returncode == 0, table.stderr
    assert "error_rates" in table.stdout and "error_rate" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sql", "run", "no_such_query"], "no query named 'no_such_query'"),
        (["sql", "run", "error_rates", "--param", "colour=red"], "has no parameter(s) colour"),
        (["sql", "run", "error_rates", "--param", "since=yesterday"], "is not a valid DateTime64"),
        (["sql", "run", "error_rates", "--param", "since"], "--param takes name=value"),
        (["sql", "show", "nope"], "spanline sql list"),
    ],
)
def test_mistakes_are_actionable_errors(stack: Stack, args: list[str], message: str) -> None:
    result = run_cli(stack, *args)
    assert result.returncode == 2
    assert message in " ".join((result.stdout + result.stderr).split())


def test_ad_hoc_query_formats(stack_env: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sql = (
        f"SELECT kind, count() AS spans FROM {stack_env.settings.clickhouse_database}.spans GROUP BY kind ORDER BY kind"
    )
    main(["sql", "query", sql, "--format", "csv"])
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["kind", "spans"] and {"llm", "request"} <= {row[0] for row in rows[1:]}
    main(["sql", "query", sql, "--format", "json"])
    assert {r["kind"] for r in orjson.loads(capsys.readouterr().out)} == {row[0] for row in rows[1:]}
