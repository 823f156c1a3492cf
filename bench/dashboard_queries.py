"""Dashboard query latency: every panel, template-variable and annotation query on N spans in chDB.

Data: ``--spans`` spans of the simulator's workload spread over ``--days`` days, made into rows
exactly as the worker makes them (orjson messages of 500 spans -> ``process_batch``) and
inserted in worker-sized batches with ``insert_arrow``, so the materialized views fill the
rollups as they do in production. ``--reuse PATH`` keeps the chDB data at PATH and loads only
when it holds no spans yet (the default is a fresh temporary path, removed afterwards).

Queries: each is expanded as grafana-clickhouse-datasource expands it (every variable at All,
the static report's query interval) for the last 24 hours and the last 7 days of the data,
then run ``--runs`` times in rounds over all queries (round 1 is the first run after loading);
per query p50 and max, and overall p50/max over every run of every query.

    python bench/dashboard_queries.py --spans 200000
    python bench/dashboard_queries.py --reuse /tmp/spanline-dash-10m
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain, islice
from pathlib import Path
from typing import TypeVar

import orjson
from clickhouse_connect.driver.client import Client
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import publish
from spanline.contracts import load_contracts
from spanline.dashboards.catalog import ANNOTATIONS, VARIABLES, build_dashboards
from spanline.dashboards.macros import ALL, TimeRange, Variable, expand
from spanline.dashboards.model import with_database
from spanline.dashboards.report import report_interval
from spanline.simulator.workload import WorkloadConfig, generate_traces
from spanline.sql.client import connect
from spanline.sql.migrate import apply_migrations
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch
from spanline.streams.rollup import TOKEN_SUFFIX, minute_rollup
from spanline.streams.sinks import DEDUP_SETTINGS

DATABASE = "bench"
SPANS_PER_MESSAGE = 500
MESSAGES_PER_BATCH = 200  # the worker's default batch_max_messages
#: The workload's spans/s = SPANS_PER_REQUEST x requests_per_s + CANARY_SPANS_PER_S (retrieval
#: canaries come at a fixed rate); fitted on whole days of its diurnal curve.
SPANS_PER_REQUEST, CANARY_SPANS_PER_S = 5.8, 0.28
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
SLOW_MS = 2000.0
T = TypeVar("T")
console = Console()
if not console.is_terminal:  # piped to a file: wide enough for the panel table
    console.width = 150


@dataclass
class Query:
    dashboard: str
    title: str
    sql: str
    runs_ms: dict[str, list[float]] = field(default_factory=dict)  # range -> latency of each run
    rows: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter), without materialising ``items``."""
    it = iter(items)
    return iter(lambda: list(islice(it, size)), [])


def batches(spans: int, days: float) -> Iterator[Batch]:
    """The workload as the worker receives it: batches of Kafka messages of 500 spans each."""
    seconds = days * 86400
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    # 3 % over, so the generator reaches `spans` (cut there) despite the load curve's noise.
    requests_per_s = 1.03 * max(spans / seconds - CANARY_SPANS_PER_S, 0.01) / SPANS_PER_REQUEST
    config = WorkloadConfig(start=end - timedelta(seconds=seconds), duration_s=seconds, requests_per_s=requests_per_s)
    generated = islice(chain.from_iterable(generate_traces(config)), spans)
    messages = (
        Message(0, offset, orjson.dumps(body), "bench")
        for offset, body in enumerate(chunks(generated, SPANS_PER_MESSAGE))
    )
    for group in chunks(messages, MESSAGES_PER_BATCH):
        yield Batch(0, group[0].offset, group[-1].offset, group, False)


def load(client: Client, spans: int, days: float) -> dict[str, object]:
    """Fill the spans table and the rollups as the worker does; returns the load figures."""
    catalog = PriceCatalog.load()
    stored = 0
    spent = {"generate": 0.0, "process": 0.0, "insert": 0.0}
    columns = (TextColumn("loading spans"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    started = time.perf_counter()
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("load", total=spans)
        tick = time.perf_counter()
        for batch in batches(spans, days):
            spent["generate"] += time.perf_counter() - tick
            tick = time.perf_counter()
            result = process_batch(batch, "spans", catalog)
            if result.dead_letters or result.rows is None or result.table is None:
                raise RuntimeError(f"the worker dead-lettered {len(result.dead_letters)} generated span(s)")
            spent["process"] += time.perf_counter() - tick
            tick = time.perf_counter()
            token = {**DEDUP_SETTINGS, "insert_deduplication_token": batch.token("spans", "bench")}
            client.insert_arrow(f"{DATABASE}.spans", result.table, settings=token)
            token["insert_deduplication_token"] += TOKEN_SUFFIX  # the worker's rollup insert
            client.insert_arrow(f"{DATABASE}.spans_minute", minute_rollup(result.rows).table, settings=token)
            spent["insert"] += time.perf_counter() - tick
            stored += len(result.rows)
            progress.update(task, completed=stored)
            tick = time.perf_counter()
    elapsed = time.perf_counter() - started
    return {
        "load_s": round(elapsed, 1),
        "load_spans_per_s": round(stored / elapsed),
        **{f"load_{step}_s": round(seconds, 1) for step, seconds in spent.items()},
    }


def all_queries() -> list[Query]:
    """Template variables first (their answers are what All stands for), annotations, then panels."""
    queries = [Query("variables", v.name, v.sql) for v in VARIABLES]
    queries += [Query("annotations", a.name, a.sql) for a in ANNOTATIONS]
    return queries + [Query(d.uid, p.title, p.sql) for d in build_dashboards(load_contracts()) for p in d.panels]


def variables_at_all(client: Client) -> list[Variable]:
    """Every variable at All, standing for the values its own query offers (as in Grafana)."""
    return [
        Variable(v.name, [ALL], [row[0] for row in client.query(with_database(v.sql, DATABASE)).result_rows])
        for v in VARIABLES
    ]


def measure(client: Client, queries: list[Query], ranges: dict[str, TimeRange], runs: int) -> None:
    variables = variables_at_all(client)
    columns = (TextColumn("querying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("query", total=runs * len(ranges) * len(queries))
        for _ in range(runs):
            for label, time_range in ranges.items():
                for query in queries:
                    progress.advance(task)
                    if label in query.errors:
                        continue
                    sql = expand(with_database(query.sql, DATABASE), time_range, variables)
                    started = time.perf_counter()
                    try:
                        result = client.query(sql)
                    except Exception as exc:  # one failing panel is a finding, not the end of the run
                        query.errors[label] = str(exc).splitlines()[0][:200]
                        continue
                    query.runs_ms.setdefault(label, []).append((time.perf_counter() - started) * 1000)
                    query.rows[label] = len(result.result_rows)


def show(queries: list[Query], ranges: list[str]) -> None:
    table = Table(title="Dashboard query latency (ms)")
    table.add_column("Dashboard")
    table.add_column("Panel / query")
    for label in ranges:
        for name in ("p50", "max", "rows"):
            table.add_column(f"{label} {name}", justify="right")
    for query in queries:
        cells: list[str] = []
        for label in ranges:
            if label in query.errors:
                cells += ["[red]failed[/]", "", ""]
                continue
            runs = query.runs_ms[label]
            p50 = statistics.median(runs)
            shown = f"{p50:,.1f}"
            cells += [f"[red]{shown}[/]" if p50 > SLOW_MS else shown, f"{max(runs):,.1f}", f"{query.rows[label]:,}"]
        table.add_row(query.dashboard.removeprefix("spanline-"), query.title, *cells)
    console.print(table)
    for query in queries:
        for label, error in query.errors.items():
            console.print(f"[red]{query.dashboard} / {query.title} ({label}) failed:[/] {error}")


def figures(queries: list[Query], ranges: list[str], spans: int, loaded: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {"spans": spans, **loaded, "queries": len(queries)}
    for label in ranges:
        every = [ms for q in queries for ms in q.runs_ms.get(label, [])]
        slowest = max((q for q in queries if label in q.runs_ms), key=lambda q: statistics.median(q.runs_ms[label]))
        out |= {
            f"{label}_p50_ms": round(statistics.median(every), 1),
            f"{label}_max_ms": round(max(every), 1),
            f"{label}_slowest": f"{slowest.dashboard}/{slowest.title}",
            f"{label}_failed": sum(label in q.errors for q in queries),
        }
    out["panels"] = [
        {
            "dashboard": q.dashboard,
            "panel": q.title,
            "range": label,
            "rows": q.rows.get(label),
            "p50_ms": round(statistics.median(q.runs_ms[label]), 1) if label in q.runs_ms else None,
            "max_ms": round(max(q.runs_ms[label]), 1) if label in q.runs_ms else None,
            "error": q.errors.get(label),
        }
        for q in queries
        for label in ranges
    ]
    return out


def run(path: Path, spans: int, days: float, runs: int) -> None:
    client = connect(f"chdb://{path}")
    try:
        apply_migrations(client, DATABASE, ttl_days=int(days) + 30)  # no generated day expires
        stored = client.query(f"SELECT count() FROM {DATABASE}.spans").result_rows[0][0]
        loaded: dict[str, object] = {"reused": True}
        if stored == 0:
            loaded = load(client, spans, days)
            stored = client.query(f"SELECT count() FROM {DATABASE}.spans").result_rows[0][0]
        else:
            console.print(f"reusing {stored:,} spans at {path}")
        first, last = client.query(f"SELECT min(start_time), max(start_time) FROM {DATABASE}.spans").result_rows[0]
        end = last.replace(tzinfo=UTC)
        ranges = {
            label: TimeRange(end - width, end, report_interval(end - width, end)) for label, width in RANGES.items()
        }
        parts = client.query(
            "SELECT table, count() FROM system.parts WHERE database = {db:String} AND active "
            "AND table IN ('spans', 'spans_minute') GROUP BY table ORDER BY table",
            parameters={"db": DATABASE},
        ).result_rows
        queries = all_queries()
        measure(client, queries, ranges, runs)
    finally:
        client.close()
    show(queries, list(ranges))
    publish(
        "dashboard_queries",
        {
            **figures(queries, list(ranges), stored, loaded),
            "data_days": round((last - first).total_seconds() / 86400, 2),
            "runs_per_query": runs,
            **{f"active_parts_{table}": count for table, count in parts},
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--days", type=float, default=7.0, help="time the spans are spread over")
    parser.add_argument("--runs", type=int, default=3, help="runs of each query per time range")
    parser.add_argument("--reuse", type=Path, help="chDB path to keep; loaded only if it holds no spans")
    args = parser.parse_args()
    if args.reuse:
        run(args.reuse.resolve(), args.spans, args.days, args.runs)
        return
    with tempfile.TemporaryDirectory(prefix="spanline-dash-") as scratch:
        run(Path(scratch) / "chdb", args.spans, args.days, args.runs)


if __name__ == "__main__":
    main()
