"""Trace query latency: opening one trace (`spanline trace ID`) on N spans in chDB.

Data: ``--spans`` spans of the simulator's workload over ``--days`` days, loaded exactly as
bench/dashboard_queries.py loads them (worker rows, worker-sized Arrow inserts, so the
materialized views fill ``trace_index`` as in production). ``--reuse PATH`` keeps the data.

For ``--traces`` random trace ids, three ways to read a trace's spans, each run ``--runs`` times:

* **lookup** (what Spanline runs, spanline/traces/fetch.py): ``trace_index`` gives tenant and
  start-time range, then the spans query prunes by the sort key, then the bloom filter;
  the figure includes both round trips;
* **bloom filter only**: ``WHERE trace_id = …`` on ``spans`` (sql/statements/trace_spans_scan.sql);
* **full scan**: the same with ``use_skip_indexes = 0`` (what a table without either pays);
* **floor**: ``SELECT 1``, one round trip that reads nothing (a loaded shared box inflates all).

The query condition cache is off, so repeated runs measure the indexes, not remembered granules.

Prints p50 / p95 / max per way and the granules each reads (EXPLAIN indexes = 1).

``--copies K`` multiplies the loaded spans K times inside ClickHouse (INSERT … SELECT through the
materialized views): copy k gets new trace and span ids and is shifted ``--days`` × k earlier,
so K weeks of the same simulated traffic; loading 10M spans through the worker's path takes
over an hour on a shared 2-core box, copying 2M five times a few minutes.

    python bench/trace_query.py --spans 2000000
    python bench/trace_query.py --spans 2000000 --copies 5 --reuse /tmp/spanline-trace-10m
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from clickhouse_connect.driver.client import Client
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dashboard_queries import DATABASE, load
from bench.report import publish
from spanline.sql.client import connect
from spanline.sql.migrate import apply_migrations
from spanline.sql.statements import render_statement
from spanline.traces.fetch import client_runner, fetch_trace
from spanline.traces.tree import SPAN_COLUMNS

console = Console()


def sample_trace_ids(client: Client, count: int) -> list[str]:
    rows = client.query(
        f"SELECT trace_id FROM {DATABASE}.trace_index ORDER BY cityHash64(trace_id, 'bench') LIMIT {{n:UInt32}}",
        parameters={"n": count},
    ).result_rows
    return [row[0] for row in rows]


def timed(runs: int, function: Callable[[], int]) -> tuple[list[float], int]:
    """Latency (ms) of each of ``runs`` calls, and the span count the last call returned."""
    latencies, spans = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        spans = function()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, spans


def granules(client: Client, sql: str, parameters: dict[str, object], settings: dict[str, object]) -> str:
    """'selected/total' granules of the spans table's last index step (EXPLAIN indexes = 1)."""
    plan = [
        row[0]
        for row in client.query(f"EXPLAIN indexes = 1 {sql}", parameters=parameters, settings=settings).result_rows
    ]
    counts = [line.strip() for line in plan if line.strip().startswith("Granules:")]
    return counts[-1].removeprefix("Granules: ") if counts else "?"


def copy_spans(client: Client, copies: int, days: float) -> float:
    """Copies 1..copies-1 of the loaded spans (new ids, shifted earlier); returns the seconds taken."""
    started = time.perf_counter()
    columns = [row[0] for row in client.query(f"DESCRIBE TABLE {DATABASE}.spans").result_rows]
    shifted = {"start_time", "end_time", "ingested_at", "kafka_timestamp"}
    renamed = {"trace_id", "span_id", "parent_span_id"}
    for copy in range(1, copies):
        shift = f"toIntervalSecond({round(days * 86400 * copy)})"
        select = ", ".join(
            f"{c} - {shift}" if c in shifted else f"if({c} = '', '', concat({c}, '~{copy}'))" if c in renamed else c
            for c in columns
        )
        client.command(
            f"INSERT INTO {DATABASE}.spans ({', '.join(columns)}) SELECT {select} FROM {DATABASE}.spans "
            "WHERE position(trace_id, '~') = 0",
            settings={"max_partitions_per_insert_block": 1000},
        )
        console.print(f"copy {copy} of the spans inserted")
    return round(time.perf_counter() - started, 1)


def run(path: Path, spans: int, days: float, traces: int, runs: int, copies: int) -> None:
    client = connect(f"chdb://{path}")
    try:
        apply_migrations(client, DATABASE, ttl_days=int(days * copies) + 30)
        stored = client.query(f"SELECT count() FROM {DATABASE}.spans").result_rows[0][0]
        loaded: dict[str, object] = {"reused": True}
        if stored == 0:
            loaded = load(client, spans, days)
            stored = client.query(f"SELECT count() FROM {DATABASE}.spans").result_rows[0][0]
        if copies > 1 and stored < spans * copies:
            loaded["copies"] = copies
            loaded["copy_s"] = copy_spans(client, copies, days)
            stored = client.query(f"SELECT count() FROM {DATABASE}.spans").result_rows[0][0]
        console.print(f"{stored:,} spans at {path}; optimizing nothing, measuring parts as the worker leaves them")
        # ClickHouse's query condition cache remembers which granules a predicate ruled out, so a
        # repeated run of the same query skips them whatever the index: measure the indexes alone.
        client.set_client_setting("use_query_condition_cache", "0")
        ids = sample_trace_ids(client, traces)
        runner = client_runner(client)
        scan_sql = render_statement("trace_spans_scan", database=DATABASE, columns=SPAN_COLUMNS)
        ways: dict[str, Callable[[str], int]] = {
            "lookup": lambda trace_id: len((fetch_trace(runner, DATABASE, trace_id) or _empty()).rows),
            "bloom filter only": lambda trace_id: len(
                client.query(scan_sql, parameters={"trace_id": trace_id}).result_rows
            ),
            "full scan": lambda trace_id: len(
                client.query(scan_sql, parameters={"trace_id": trace_id}, settings={"use_skip_indexes": 0}).result_rows
            ),
        }
        # The floor: one round trip that reads nothing (a loaded shared box inflates every query).
        ways["floor: SELECT 1"] = lambda trace_id: len(client.query("SELECT 1").result_rows) * 0
        results: dict[str, list[float]] = {name: [] for name in ways}
        mismatches = 0
        for trace_id in ids:
            counts = set()
            for name, way in ways.items():
                latencies, found = timed(runs, functools.partial(way, trace_id))
                results[name] += latencies
                if not name.startswith("floor"):
                    counts.add(found)
            mismatches += len(counts) > 1
        located = client.query(
            render_statement("trace_locate", database=DATABASE), parameters={"trace_id": ids[0]}
        ).result_rows
        lookup_params = {
            "trace_id": ids[0],
            "tenants": [row[0] for row in located],
            "first_start": min(row[1] for row in located),
            "last_start": max(row[2] for row in located),
        }
        lookup_sql = render_statement("trace_spans", database=DATABASE, columns=SPAN_COLUMNS)
        read = {
            "lookup": granules(client, lookup_sql, lookup_params, {}),
            "bloom filter only": granules(client, scan_sql, {"trace_id": ids[0]}, {}),
            "full scan": granules(client, scan_sql, {"trace_id": ids[0]}, {"use_skip_indexes": 0}),
            "floor: SELECT 1": "0",
        }
    finally:
        client.close()
    table = Table(title=f"Opening one trace: {len(ids)} random traces x {runs} runs on {stored:,} spans (ms)")
    for column in ("way", "p50", "p95", "max", "granules read (one trace)"):
        table.add_column(column, justify="left" if column == "way" else "right")
    figures: dict[str, object] = {"spans": stored, **loaded, "traces": len(ids), "runs_per_trace": runs}
    for name, latencies in results.items():
        p50, p95 = statistics.median(latencies), statistics.quantiles(latencies, n=20, method="inclusive")[-1]
        table.add_row(name, f"{p50:,.1f}", f"{p95:,.1f}", f"{max(latencies):,.1f}", read[name])
        key = name.split(":")[0].replace(" ", "_")
        figures |= {
            f"{key}_p50_ms": round(p50, 1),
            f"{key}_p95_ms": round(p95, 1),
            f"{key}_max_ms": round(max(latencies), 1),
        }
        figures[f"{key}_granules"] = read[name]
    figures["span_count_mismatches"] = mismatches
    console.print(table)
    publish(f"trace_query_{stored // 1_000_000}m", figures)


def _empty() -> object:
    raise RuntimeError("a sampled trace id has no spans")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--days", type=float, default=7.0, help="time the spans are spread over")
    parser.add_argument("--traces", type=int, default=50, help="random trace ids to open")
    parser.add_argument("--runs", type=int, default=3, help="runs per trace id and way")
    parser.add_argument("--copies", type=int, default=1, help="multiply the loaded spans this many times")
    parser.add_argument("--reuse", type=Path, help="chDB path to keep; loaded only if it holds no spans")
    args = parser.parse_args()
    if args.reuse:
        run(args.reuse.resolve(), args.spans, args.days, args.traces, args.runs, args.copies)
        return
    with tempfile.TemporaryDirectory(prefix="spanline-trace-") as scratch:
        run(Path(scratch) / "chdb", args.spans, args.days, args.traces, args.runs, args.copies)


if __name__ == "__main__":
    main()
