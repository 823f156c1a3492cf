"""Freshness: how long after it is sent a span is visible in ClickHouse (docs/requirements.md §8: p99 ≤ 2 s).

A producer sends one wave of spans every ``--interval-ms`` at a steady ``--rate`` for
``--seconds`` through Kafka (the collector's SpanPublisher, acks=all) to one embedded worker;
every wave is named, and a poller asks ClickHouse (through the worker's query API, as the CLI
does) which waves are complete. A wave's delay = first poll that sees all of it − its send
time, so the figures include up to one poll interval of measurement granularity.

    python bench/freshness.py --rate 20000 --seconds 30
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.embedded import bench_stack
from bench.report import publish
from spanline.kafka.publish import SpanPublisher
from spanline.sql.queries import run_query

POLL_S = 0.2


def wave(run: str, number: int, size: int) -> list[dict[str, object]]:
    now = datetime.now(UTC).isoformat()
    return [
        {
            "span_id": f"{run}-{number}-{i}",
            "trace_id": f"{run}-{number}-{i // 4}",
            "service": run,
            "feature": "freshness",
            "kind": "llm",
            "name": f"wave-{number}",
            "start_time": now,
            "duration_ms": 420.0,
            "ttft_ms": 90.0,
            "provider": "openai",
            "model_requested": "gpt-4o-mini",
            "input_tokens": 800,
            "output_tokens": 120,
        }
        for i in range(size)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=20_000, help="spans per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument(
        "--batch-within-s",
        type=float,
        default=None,
        help="the worker's SPANLINE_BATCH_WITHIN_S (default: the setting's default)",
    )
    args = parser.parse_args()
    run = f"fresh{uuid.uuid4().hex[:6]}"
    size = max(1, args.rate * args.interval_ms // 1000)
    waves = int(args.seconds * 1000 / args.interval_ms)
    worker_env = {} if args.batch_within_s is None else {"SPANLINE_BATCH_WITHIN_S": str(args.batch_within_s)}
    with bench_stack(**worker_env) as stack:
        stack.start_workers(1)
        worker = stack.workers[0]
        sent_at: dict[str, float] = {}
        seen_at: dict[str, float] = {}
        done = threading.Event()

        def poll() -> None:
            sql = (
                f"SELECT name, count() FROM {worker.settings.clickhouse_database}.spans "
                "WHERE service = {run:String} GROUP BY name"
            )
            while not done.is_set() or len(seen_at) < len(sent_at):
                now = time.perf_counter()
                for name, count in run_query(worker.settings, sql, {"run": run}).rows:
                    if count == size and name not in seen_at:
                        seen_at[name] = now
                time.sleep(POLL_S)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        publisher = SpanPublisher(stack.bootstrap_servers, stack.settings.topic_spans)
        started = time.perf_counter()
        for number in range(waves):
            publisher.send(wave(run, number, size), "bench")
            sent_at[f"wave-{number}"] = time.perf_counter()
            time.sleep(max(0.0, started + (number + 1) * args.interval_ms / 1000 - time.perf_counter()))
        publisher.flush()
        publisher.close()
        done.set()
        poller.join(timeout=120)
    delays = np.array([seen_at[name] - sent for name, sent in sent_at.items() if name in seen_at])
    publish(
        "freshness",
        {
            "spans_per_s": args.rate,
            "seconds": args.seconds,
            "waves": waves,
            "waves_seen": len(delays),
            "delay_p50_s": round(float(np.percentile(delays, 50)), 3),
            "delay_p99_s": round(float(np.percentile(delays, 99)), 3),
            "delay_max_s": round(float(delays.max()), 3),
            "poll_interval_s": POLL_S,
            "batch_within_s": stack.settings.batch_within_s,
            "target_p99_s": 2.0,
        },
    )


if __name__ == "__main__":
    main()
