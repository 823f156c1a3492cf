"""A throw-away embedded stack for benchmarks: tansu broker, topics and `spanline worker`s.

Each worker gets a SPANLINE_HOME (so a chDB path and query port) of its own: chDB admits one
process per path, so workers sharing one database need a ClickHouse server, and the scale-out
benchmark counts what every worker stored.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from spanline.kafka.admin import ensure_topics
from spanline.kafka.tansu import TansuBroker
from spanline.settings import Settings, load_settings
from spanline.sql.queries import run_query
from spanline.sql.service_file import ServiceFile

BROKER_PORT = 29092
FIRST_WORKER_WEB_PORT = 26066


@dataclass
class BenchWorker:
    home: Path
    settings: Settings
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SPANLINE_")}, **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "spanline.cli", "worker"],
            env=env,
            stdout=open(self.home / "worker.log", "ab"),
            stderr=subprocess.STDOUT,
        )

    @property
    def ready(self) -> bool:
        """Serving queries, i.e. started and joined; raises if the process died."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"a worker exited; see {self.home / 'worker.log'}")
        return ServiceFile(self.home).read() is not None

    def stats(self) -> dict[str, float]:
        """The worker's PipelineStats from its web port. Polling progress this way costs the
        worker nothing on its sink thread, where each query opens a chDB client of its own."""
        port = self.env["SPANLINE_WORKER_WEB_PORT"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/spanline/stats", timeout=10) as response:
            stats: dict[str, float] = orjson.loads(response.read())
        return stats

    def scalar(self, sql: str, **parameters: object) -> object:
        return run_query(self.settings, sql.replace("{db}", self.settings.clickhouse_database), parameters).rows[0][0]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@dataclass
class BenchStack:
    root: Path
    env: dict[str, str]
    settings: Settings
    workers: list[BenchWorker] = field(default_factory=list)
    first_web_port: int = FIRST_WORKER_WEB_PORT

    @property
    def bootstrap_servers(self) -> str:
        return self.settings.bootstrap_servers

    def start_workers(self, count: int = 1) -> float:
        """Start ``count`` workers in one consumer group; seconds until all serve queries."""
        started = time.perf_counter()
        for index in range(len(self.workers), len(self.workers) + count):
            home = self.root / f"worker-{index}"
            env = {
                **self.env,
                "SPANLINE_HOME": str(home),
                "SPANLINE_WORKER_WEB_PORT": str(self.first_web_port + index),
            }
            worker = BenchWorker(home, load_settings(env), env)
            worker.start()
            self.workers.append(worker)
        while not all(worker.ready for worker in self.workers):
            time.sleep(0.05)
        return time.perf_counter() - started

    def stored(self, where: str = "1", **parameters: object) -> int:
        """Spans stored by all workers together (each has its own chDB)."""
        return sum(
            int(worker.scalar(f"SELECT count() FROM {{db}}.spans WHERE {where}", **parameters))  # type: ignore[arg-type]
            for worker in self.workers
        )

    def stored_reported(self) -> int:
        """Spans the workers report stored (their stats; a benchmark's progress poll)."""
        return sum(int(worker.stats()["spans_stored"]) for worker in self.workers)

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()


@contextmanager
def bench_stack(
    partitions: int = 4,
    broker_port: int = BROKER_PORT,
    first_web_port: int = FIRST_WORKER_WEB_PORT,
    **settings_env: str,
) -> Iterator[BenchStack]:
    """An embedded broker on ``broker_port``, topics created; workers are started by the caller
    (web ports from ``first_web_port`` on). Benchmarks that may run beside others pick ports of their own."""
    root = Path(tempfile.mkdtemp(prefix="spanline-bench-"))
    env = {
        "SPANLINE_HOME": str(root),
        "SPANLINE_EMBEDDED_KAFKA_PORT": str(broker_port),
        "SPANLINE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker_port}",
        "SPANLINE_TOPIC_PARTITIONS": str(partitions),
        "SPANLINE_BROKER_SESSION_TIMEOUT_S": "2",
        "SPANLINE_LOG_LEVEL": "WARNING",
        **settings_env,
    }
    settings = load_settings(env)
    with TansuBroker(broker_port, log_path=root / "tansu.log"):
        ensure_topics(settings.bootstrap_servers, {settings.topic_spans: partitions, settings.topic_dlq: 1})
        stack = BenchStack(root, env, settings, first_web_port=first_web_port)
        try:
            yield stack
        finally:
            stack.stop_workers()
