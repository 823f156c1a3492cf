"""First end-to-end throughput figure: spans/s from Kafka through one worker into chDB.

Pre-produces N realistic spans (the simulator's workload, 500 per message) into an embedded
tansu broker, then starts one `spanline worker` and times until ClickHouse holds all N.
The worker aggregates every stored batch into per-minute windows (streams/windows) and emits
the closed ones to `metrics`; the worker's own stats tell how much of its time that took (and how much writing the minute
rollup with each raw insert took), and
the table sets the figure beside the foundation's (before windows existed).
Prints a table and writes bench/results/pipeline_throughput.json.

    python bench/pipeline_throughput.py --spans 200000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from spanline.kafka.admin import ensure_topics
from spanline.kafka.publish import SpanPublisher
from spanline.kafka.tansu import TansuBroker
from spanline.settings import load_settings
from spanline.simulator.workload import WorkloadConfig, generate_traces
from spanline.sql.queries import run_query
from spanline.sql.service_file import ServiceFile

RESULTS = Path(__file__).with_name("results")
#: One worker, Kafka -> validate -> price -> chDB, measured with this bench before the stream
#: windows existed (README "Measured on this machine", commit 1a800da).
FOUNDATION_SPANS_PER_S = 20_000


def spans_for(count: int, minutes: float = 5.0) -> list[dict[str, object]]:
    """``count`` spans of the simulator's workload packed into ``minutes`` of event time ending now.

    As dense as a busy deployment's traffic, so a replay closes windows at about the pace a
    live worker does (an hour of event time replayed in seconds would close hundreds per batch).
    """
    start = datetime.now(UTC) - timedelta(minutes=minutes)
    rate = max(1.0, count / (minutes * 60) / 5)  # 5-7 spans per request
    while True:
        config = WorkloadConfig(start=start, duration_s=minutes * 60, requests_per_s=rate)
        spans = [span for chunk in generate_traces(config) for span in chunk]
        if len(spans) >= count:
            return spans[:count]
        rate *= 1.2 * count / max(len(spans), 1)


def worker_stats(port: str) -> dict[str, float]:
    """The worker's PipelineStats (time spent on windows, windows emitted) from its web port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/spanline/stats", timeout=10) as response:
        return orjson.loads(response.read())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), so that figures taken on a busy
    machine still say how much of a core each span costs the worker."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="spanline-bench-"))
    port = 29092
    env = {
        "SPANLINE_HOME": str(home),
        "SPANLINE_EMBEDDED_KAFKA_PORT": str(port),
        "SPANLINE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "SPANLINE_WORKER_WEB_PORT": "26066",
        "SPANLINE_TOPIC_PARTITIONS": str(args.partitions),
        "SPANLINE_BATCH_MAX_MESSAGES": "100",
        "SPANLINE_BROKER_SESSION_TIMEOUT_S": "2",
        "SPANLINE_LOG_LEVEL": "WARNING",
    }
    settings = load_settings(env)
    spans = spans_for(args.spans)
    with TansuBroker(port, log_path=home / "tansu.log") as broker:
        ensure_topics(broker.bootstrap_servers, {settings.topic_spans: args.partitions, settings.topic_dlq: 1})
        publisher = SpanPublisher(broker.bootstrap_servers, settings.topic_spans)
        started = time.perf_counter()
        for start in range(0, len(spans), 50_000):
            publisher.send(spans[start : start + 50_000], "bench")
        publisher.flush()
        produce_s = time.perf_counter() - started
        publisher.close()
        worker = subprocess.Popen(
            [sys.executable, "-m", "spanline.cli", "worker"],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("SPANLINE_")}, **env},
            stdout=open(home / "worker.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            started = time.perf_counter()
            while ServiceFile(home).read() is None:
                time.sleep(0.1)
            ready_s = time.perf_counter() - started
            cpu_at_ready = cpu_seconds(worker.pid)
            stats = worker_stats(env["SPANLINE_WORKER_WEB_PORT"])
            while stats["spans_stored"] < len(spans):  # the stats, not a query: see bench/embedded.py
                time.sleep(0.25)
                stats = worker_stats(env["SPANLINE_WORKER_WEB_PORT"])
            total_s = time.perf_counter() - started
            worker_cpu_s = cpu_seconds(worker.pid) - cpu_at_ready
            rows = int(run_query(settings, "SELECT count() FROM spanline.spans").rows[0][0])
            if rows != len(spans):
                raise SystemExit(f"the worker reported {len(spans)} spans stored but its spans table holds {rows}")
        finally:
            worker.terminate()
            worker.wait(30)
    process_s = total_s - ready_s
    figures = {
        "spans": len(spans),
        "partitions": args.partitions,
        "produce_spans_per_s": round(len(spans) / produce_s),
        "worker_start_s": round(ready_s, 2),
        "worker_spans_per_s": round(len(spans) / process_s),
        "worker_cpu_us_per_span": round(worker_cpu_s / len(spans) * 1e6, 1),
        "worker_cores_busy": round(worker_cpu_s / process_s, 2),
        "foundation_worker_spans_per_s": FOUNDATION_SPANS_PER_S,
        "window_share_of_worker_time": round(stats["window_seconds"] / process_s, 3),
        "window_emit_share_of_worker_time": round(stats["window_emit_seconds"] / process_s, 3),
        "windows_emitted": int(stats["windows_emitted"]),
        "rollup_share_of_worker_time": round(stats["rollup_seconds"] / process_s, 3),
        "batches": int(stats["batches"]),
        "batches_processed_ahead": int(stats["batches_processed_ahead"]),
        "end_to_end_s": round(produce_s + total_s, 2),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pipeline_throughput.json").write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value:>12,}" if isinstance(value, int) else f"{name:<{width}}  {value:>12}")


if __name__ == "__main__":
    main()
