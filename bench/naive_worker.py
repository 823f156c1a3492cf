"""The design a first version would ship, measured: one span per Kafka message, a per-message
Faust agent, a pydantic model and a genai-prices lookup per span, one ClickHouse insert per row.

Run as ``python bench/naive_worker.py --spans 5000``: it starts an embedded broker, produces the
simulator's workload one span per message, runs this file's Faust app as a worker process and
times from its first stored span until it has stored every span (start-up excluded); then it runs bench/pipeline_throughput.py (Spanline's
batch worker, same workload and machine) and reports both figures and their ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faust
import orjson
from genai_prices import Usage, calc_price

from bench.embedded import bench_stack
from bench.pipeline_throughput import spans_for
from bench.report import RESULTS, publish
from spanline.contract.schema import Span
from spanline.settings import load_settings
from spanline.sql.client import connect
from spanline.sql.migrate import apply_migrations
from spanline.streams.app import faust_settings

NAIVE_COLUMNS = [
    "tenant_id",
    "service",
    "feature",
    "kind",
    "name",
    "start_time",
    "end_time",
    "duration_ms",
    "trace_id",
    "span_id",
    "status",
    "provider",
    "model_requested",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cost_known",
]


def naive_row(item: dict[str, Any]) -> list[Any]:
    """Validate and price one span the straightforward way."""
    span = Span.model_validate(item)
    duration = span.duration_ms if span.duration_ms is not None else 0.0
    end = span.end_time or span.start_time
    cost, known = 0.0, True
    if span.model_requested and (span.input_tokens or span.output_tokens):
        try:
            usage = Usage(
                input_tokens=span.input_tokens,
                output_tokens=span.output_tokens,
                cache_read_tokens=span.cache_read_tokens,
                cache_write_tokens=span.cache_write_tokens,
            )
            cost = float(
                calc_price(
                    usage, span.model_requested, provider_id=span.provider, genai_request_timestamp=span.start_time
                ).total_price
            )
        except LookupError:
            known = False
    return [
        span.tenant_id,
        span.service,
        span.feature,
        span.kind,
        span.name,
        span.start_time,
        end,
        duration,
        span.trace_id,
        span.span_id,
        span.status,
        span.provider or "",
        span.model_requested or "",
        span.input_tokens,
        span.output_tokens,
        cost,
        known,
    ]


def naive_app() -> faust.App:
    settings = load_settings()
    app = faust.App(f"{settings.consumer_group}-naive", **{**faust_settings(settings), "web_enabled": False})
    topic = app.topic(settings.topic_spans, value_serializer="raw")
    client = connect(settings.resolved_clickhouse_url)
    apply_migrations(client, settings.clickhouse_database, settings.raw_ttl_days)
    table = f"{settings.clickhouse_database}.spans"
    progress = progress_file(settings.home)
    stored = 0

    @app.agent(topic)
    async def ingest(stream: faust.StreamT) -> None:
        nonlocal stored
        async for value in stream:
            for item in orjson.loads(value):
                client.insert(table, [naive_row(item)], column_names=NAIVE_COLUMNS)
                stored += 1
            progress.write_text(str(stored))  # chDB admits one process: the driver reads this instead

    return app


def progress_file(home: Path) -> Path:
    return Path(home) / "naive.stored"


def measure(count: int) -> dict[str, object]:
    spans = spans_for(count)
    with bench_stack(partitions=4) as stack:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=stack.bootstrap_servers, linger_ms=5)
        for item in spans:  # one span per message: what a first version sends
            producer.send(stack.settings.topic_spans, key=str(item["trace_id"]).encode(), value=orjson.dumps([item]))
        producer.flush()
        producer.close()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SPANLINE_")}, **stack.env}
        worker = subprocess.Popen(
            [sys.executable, __file__, "worker"],
            env=env,
            cwd=Path(__file__).parent,
            stdout=open(stack.root / "naive.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            progress = progress_file(stack.root)
            first_stored, first_at = _wait_for_progress(worker, progress, 1, stack.root)
            _wait_for_progress(worker, progress, count, stack.root)
            elapsed = time.perf_counter() - first_at
        finally:
            worker.terminate()
            worker.wait(30)
    return {
        "naive_spans": count,
        "naive_seconds": round(elapsed, 1),
        "naive_spans_per_s": round((count - first_stored) / elapsed),
    }


def _wait_for_progress(worker: subprocess.Popen[bytes], progress: Path, at_least: int, home: Path) -> tuple[int, float]:
    """Poll the naive worker's stored count until it reaches ``at_least``: (count, when)."""
    while True:
        stored = int(progress.read_text() or 0) if progress.exists() else 0
        if stored >= at_least:
            return stored, time.perf_counter()
        if worker.poll() is not None:
            raise RuntimeError(f"the naive worker exited; see {home / 'naive.log'}")
        time.sleep(0.1)


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        app = naive_app()
        sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
        app.main()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=5_000, help="spans for the naive worker")
    parser.add_argument("--batch-spans", type=int, default=200_000, help="spans for Spanline's worker")
    args = parser.parse_args()
    naive = measure(args.spans)
    subprocess.run(
        [sys.executable, str(Path(__file__).with_name("pipeline_throughput.py")), "--spans", str(args.batch_spans)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    batch = orjson.loads((RESULTS / "pipeline_throughput.json").read_bytes())
    publish(
        "naive_worker",
        {
            **naive,
            "spanline_spans": batch["spans"],
            "spanline_worker_spans_per_s": batch["worker_spans_per_s"],
            "spanline_over_naive": round(batch["worker_spans_per_s"] / naive["naive_spans_per_s"], 1),
        },
    )


if __name__ == "__main__":
    main()
