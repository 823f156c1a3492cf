"""Traces: the tree (orphans, cycles, critical path) and `spanline trace` / `spanline traces` on chDB.

Spans come from the real pipeline path (generator -> process_batch) into the migrated tables of a
Spanline home, plus one orphan (its parent was never stored); the CLI runs as a separate process
against that home, as a user would run it. Figures are checked against pandas over the same rows.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from spanline.simulator.workload import WorkloadConfig
from spanline.traces.fetch import client_runner, fetch_trace, rank_traces
from spanline.traces.tree import SpanRow, build_trace
from tests.support.chdb import migrated_chdb
from tests.support.rows import worker_rows
from tests.support.stack import clean_env

DB = "spanline"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
MISSING_PARENT = "feedfacefeedface"


def _span(span_id: str, parent: str, start_ms: int, end_ms: int, kind: str = "llm", **extra: object) -> SpanRow:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    values: dict[str, object] = {
        "span_id": span_id,
        "parent_span_id": parent,
        "tenant_id": "acme",
        "service": "svc",
        "feature": "chat",
        "kind": kind,
        "name": span_id,
        "start_time": base + timedelta(milliseconds=start_ms),
        "end_time": base + timedelta(milliseconds=end_ms),
        "duration_ms": float(end_ms - start_ms),
        "status": "ok",
        "error_type": "",
        "attempt": 0,
        "provider": "",
        "model_requested": "",
        "model_response": "",
        "ttft_ms": None,
        "input_tokens": 0,
        "cache_read_tokens": 0,
        "output_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 0.0,
        "cost_known": True,
        "cache_layer": "",
        "cache_hit": None,
        "route": "",
        "routing_reason": "",
        "prompt_id": "",
        "prompt_version": "",
        "index_name": "",
        "top_k": None,
        "tool_name": "",
        "eval_name": "",
        "eval_score": None,
    }
    return SpanRow.from_record(values | extra)


def test_tree_order_orphans_cycles_and_critical_path() -> None:
    spans = [
        _span("root", "", 0, 1000, kind="request"),
        _span("retrieve", "root", 10, 200, kind="retrieval"),
        _span("cache", "root", 15, 60, kind="cache"),  # parallel with retrieve, ends first: not critical
        _span("llm", "root", 250, 900, input_tokens=100, cost_usd=0.5),
        _span("tool", "llm", 300, 400, kind="tool"),
        _span("lost", MISSING_PARENT, 500, 700, kind="tool"),
        _span("a", "b", 0, 10, kind="tool"),  # a parent cycle: reachable from nothing
        _span("b", "a", 0, 10, kind="tool"),
    ]
    trace = build_trace("t1", spans)
    order = [(row.guide, row.span.span_id) for row in trace.rows]
    assert order == [
        ("", "root"),
        ("├─ ", "retrieve"),
        ("├─ ", "cache"),
        ("└─ ", "llm"),
        ("   └─ ", "tool"),
        ("", "lost"),
        ("", "a"),  # the cycle comes last, entered at its earliest span
        ("└─ ", "b"),
    ]
    assert {row.span.span_id for row in trace.orphans} == {"lost", "a"}
    critical = {row.span.span_id: row.critical_ms for row in trace.rows if row.on_critical_path}
    # root's own time: 0-10, 200-250, 900-1000; retrieve 10-200; llm 250-300, 400-900; tool 300-400
    assert critical == {"root": 160.0, "retrieve": 190.0, "llm": 550.0, "tool": 100.0}
    assert trace.totals.critical_path_ms == 1000.0 == trace.totals.duration_ms
    assert trace.totals.critical_by_kind == {"llm": 550.0, "retrieval": 190.0, "request": 160.0, "tool": 100.0}
    assert trace.totals.cost_usd == 0.5 and trace.totals.input_tokens == 100


def test_a_repeated_span_id_is_shown_once() -> None:
    one = _span("x", "", 0, 10)
    trace = build_trace("t2", [one, replace(one, name="again")])
    assert [row.span.name for row in trace.rows] == ["x"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    home = tmp_path_factory.mktemp("traces-home")
    rows = worker_rows(WorkloadConfig(start=START, duration_s=900, requests_per_s=2))
    orphan_trace = rows["trace_id"].value_counts().index[0]  # the largest trace: its tree keeps branches
    leaves = (
        rows["trace_id"].eq(orphan_trace)
        & rows["parent_span_id"].ne("")
        & ~rows["span_id"].isin(rows["parent_span_id"])
    )
    child = rows.index[leaves][-1]
    rows.loc[child, "parent_span_id"] = MISSING_PARENT  # its parent was never stored
    with migrated_chdb(home / "clickhouse", DB) as client:  # closed: the CLI process opens this path next
        client.insert_df(f"{DB}.spans", rows, settings={"insert_deduplication_token": "traces-seed"})
    return home, rows


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env() | {"SPANLINE_HOME": str(home), "COLUMNS": "260"}
    return subprocess.run(
        [sys.executable, "-m", "spanline.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def per_trace(rows: pd.DataFrame) -> pd.DataFrame:
    grouped = rows.groupby("trace_id")
    return pd.DataFrame(
        {
            "duration_ms": (grouped["end_time"].max() - grouped["start_time"].min()).dt.total_seconds() * 1000,
            "cost_usd": grouped["cost_usd"].sum(),
            "errors": grouped["status"].apply(lambda s: int((s == "error").sum())),
            "retries": grouped["attempt"].apply(lambda s: int((s > 0).sum())),
        }
    )


def listed_ids(output: str) -> list[str]:
    return [line.split("spanline trace ")[1].split()[0] for line in output.splitlines() if "spanline trace " in line]


def test_traces_lists_the_worst_traces_with_the_command_to_open_each(stored: tuple[Path, pd.DataFrame]) -> None:
    home, rows = stored
    figures = per_trace(rows)
    slowest = cli(home, "traces", "--since", "3h", "--slowest", "5")
    assert slowest.returncode == 0, slowest.stderr
    assert listed_ids(slowest.stdout) == figures.sort_values("duration_ms", ascending=False).index[:5].tolist()
    costliest = cli(home, "traces", "--since", "3h", "--costliest", "3")
    assert listed_ids(costliest.stdout) == figures.sort_values("cost_usd", ascending=False).index[:3].tolist()
    failed = listed_ids(cli(home, "traces", "--since", "3h", "--failed", "50").stdout)
    assert failed and set(failed) <= set(figures.index[figures["errors"] > 0])
    assert len(failed) == min(50, int((figures["errors"] > 0).sum()))
    retried = listed_ids(cli(home, "traces", "--since", "3h", "--retried", "4").stdout)
    assert retried and all(figures.loc[t, "retries"] > 0 for t in retried)
    tenant = rows["tenant_id"].iloc[0]
    scoped = listed_ids(cli(home, "traces", "--since", "3h", "--tenant", tenant, "--slowest", "5").stdout)
    assert scoped and set(scoped) <= set(rows.loc[rows["tenant_id"].eq(tenant), "trace_id"])
    both = cli(home, "traces", "--slowest", "2", "--failed", "2")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_trace_draws_the_tree_totals_critical_path_and_orphan(stored: tuple[Path, pd.DataFrame]) -> None:
    home, rows = stored
    orphan = rows[rows["parent_span_id"].eq(MISSING_PARENT)].iloc[0]
    spans = rows[rows["trace_id"].eq(orphan["trace_id"])]
    done = cli(home, "trace", orphan["trace_id"])
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"trace {orphan['trace_id']} · tenant {orphan['tenant_id']}" in out and f"{len(spans)} spans" in out
    assert f"(orphan: parent {MISSING_PARENT} missing)" in out
    assert f"orphans 1 span(s) whose parent is not stored, shown at the top level: {orphan['span_id']}" in out
    assert f"cost ${spans['cost_usd'].sum():.5f}" in out
    assert f"tokens in {spans['input_tokens'].sum():,} (cached {spans['cache_read_tokens'].sum():,})" in out
    assert "critical path " in out and "├─ " in out and "█" in out
    body = [line for line in out.splitlines() if "│" in line or "┃" in line]
    assert sum(any(f" {name} " in line for name in spans["name"].unique()) for line in body) >= len(spans)
    assert "Grafana: http://localhost:3000/d/spanline-trace/spanline-trace?var-trace_id=" in out


def test_trace_respects_the_tenant_scope_and_says_what_to_do(stored: tuple[Path, pd.DataFrame]) -> None:
    home, rows = stored
    trace_id = rows["trace_id"].iloc[0]
    other = next(t for t in rows["tenant_id"].unique() if t != rows["tenant_id"].iloc[0])
    hidden = cli(home, "trace", trace_id, "--tenant", other)
    assert hidden.returncode == 2
    assert f"no spans of trace {trace_id} are stored for tenant {other}" in hidden.stdout
    assert cli(home, "trace", trace_id, "--tenant", rows["tenant_id"].iloc[0]).returncode == 0


def test_a_trace_without_a_lookup_row_is_found_by_scanning(stored: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    _, rows = stored
    with migrated_chdb(tmp_path / "chdb", DB) as client:
        client.insert_df(f"{DB}.spans", rows, settings={"insert_deduplication_token": "scan-seed"})
        run = client_runner(client)
        trace_id = rows["trace_id"].iloc[-1]
        indexed = fetch_trace(run, DB, trace_id)
        located = client.query(
            f"SELECT count() FROM {DB}.trace_index WHERE trace_id = {{t:String}}", parameters={"t": trace_id}
        )
        assert located.result_rows[0][0] >= 1
        client.command(f"TRUNCATE TABLE {DB}.trace_index")  # as for spans stored before migration 0007
        scanned = fetch_trace(run, DB, trace_id)
        assert indexed is not None and scanned is not None
        assert [r.span.span_id for r in scanned.rows] == [r.span.span_id for r in indexed.rows]
        assert len(indexed.rows) == int(rows["trace_id"].eq(trace_id).sum())
        assert fetch_trace(run, DB, "0" * 32) is None
        ranked = rank_traces(run, DB, "slowest", START, START + timedelta(hours=1), limit=1)
        assert ranked[0].duration_ms == pytest.approx(per_trace(rows)["duration_ms"].max())


def test_the_lookup_query_reads_only_the_traces_tenant_and_hours(
    stored: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    """EXPLAIN indexes = 1: the primary key (tenant) and the partition prune before the bloom filter."""
    _, rows = stored
    from spanline.sql.statements import render_statement
    from spanline.traces.tree import SPAN_COLUMNS

    with migrated_chdb(tmp_path / "chdb", DB) as client:
        client.insert_df(f"{DB}.spans", rows, settings={"insert_deduplication_token": "explain-seed"})
        trace_id = rows["trace_id"].iloc[-1]
        tenant, first, last = client.query(
            render_statement("trace_locate", database=DB), parameters={"trace_id": trace_id}
        ).result_rows[0]
        sql = render_statement("trace_spans", database=DB, columns=SPAN_COLUMNS)
        params = {"trace_id": trace_id, "tenants": [tenant], "first_start": first, "last_start": last}
        plan = "\n".join(row[0] for row in client.query(f"EXPLAIN indexes = 1 {sql}", parameters=params).result_rows)
    assert "PrimaryKey" in plan and "tenant_id" in plan and "idx_trace_id" in plan


def test_grafana_trace_panel_and_trace_tables_agree_with_the_cli(
    stored: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    """The Traces panel's query (as the plugin expands it) returns the trace in the plugin's trace
    format; the trace tables rank as `spanline traces` does."""
    from spanline.contracts import load_contracts
    from spanline.dashboards.catalog import VARIABLES, build_dashboards, trace_dashboard
    from spanline.dashboards.macros import ALL, TimeRange, Variable, expand
    from spanline.dashboards.model import with_database

    _, rows = stored
    window = TimeRange(START - timedelta(minutes=5), START + timedelta(hours=1), timedelta(minutes=1))
    trace_id = per_trace(rows)["duration_ms"].idxmax()
    (panel,) = trace_dashboard().panels
    with migrated_chdb(tmp_path / "chdb", DB) as client:
        client.insert_df(f"{DB}.spans", rows, settings={"insert_deduplication_token": "grafana-seed"})
        sql = expand(with_database(panel.sql, DB), window, [Variable("trace_id", trace_id)])
        frame = client.query_df(sql)
        run = client_runner(client)
        at_all = [
            Variable(v.name, [ALL], [r[0] for r in client.query(with_database(v.sql, DB)).result_rows])
            for v in VARIABLES
        ]
        tables = {
            (d.uid, p.title): client.query_df(expand(with_database(p.sql, DB), window, at_all))
            for d in build_dashboards(load_contracts())
            for p in d.panels
            if p.trace_links and p.title.endswith(" traces")  # Active alerts links its example trace
        }
        ranked = {
            rank: [t.trace_id for t in rank_traces(run, DB, rank, window.start, window.end, limit=20)]
            for rank in ("slowest", "costliest", "failed")
        }
    spans = rows[rows["trace_id"].eq(trace_id)]
    assert sorted(frame["spanID"]) == sorted(spans["span_id"]) and set(frame["traceID"]) == {trace_id}
    assert dict(zip(frame["spanID"], frame["parentSpanID"], strict=True)) == dict(
        zip(spans["span_id"], spans["parent_span_id"], strict=True)
    )
    assert frame["statusCode"].tolist() == [2 if s == "error" else 0 for s in spans.sort_values("start_time")["status"]]
    llm = frame[frame["operationName"].str.startswith("llm ")].iloc[0]
    assert {"key": "kind", "value": "llm"} in list(llm["tags"]) and any(t["key"] == "model" for t in llm["tags"])
    assert {"key": "tenant", "value": spans["tenant_id"].iloc[0]} in list(llm["serviceTags"])
    assert len(tables) == 4
    for (_, title), table in tables.items():
        assert table["trace_id"].tolist() == ranked[title.split()[0].lower()], title


def test_a_trace_survives_the_query_services_json(stored: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    """In embedded mode the CLI's queries cross the worker's query service as JSON (parameters by
    spanline.sql.queries._wire_value, rows as spanline/query_service.py encodes them)."""
    import orjson

    from spanline.sql.queries import QueryResult, _wire_value

    _, rows = stored
    with migrated_chdb(tmp_path / "chdb", DB) as client:
        client.insert_df(f"{DB}.spans", rows, settings={"insert_deduplication_token": "json-seed"})

        def over_json(sql: str, parameters: dict[str, object]) -> QueryResult:
            wire = orjson.loads(orjson.dumps({k: _wire_value(v) for k, v in parameters.items()}))
            result = client.query(sql, parameters=wire)
            payload = {"columns": list(result.column_names), "rows": [list(r) for r in result.result_rows]}
            decoded = orjson.loads(orjson.dumps(payload, default=str, option=orjson.OPT_SERIALIZE_NUMPY))
            return QueryResult(decoded["columns"], decoded["rows"])

        trace_id = per_trace(rows)["duration_ms"].idxmax()
        direct = fetch_trace(client_runner(client), DB, trace_id)
        crossed = fetch_trace(over_json, DB, trace_id)
        ranked = rank_traces(over_json, DB, "slowest", START, START + timedelta(hours=1), limit=1)
    assert direct is not None and crossed == direct
    assert ranked[0].trace_id == trace_id
