"""A throw-away embedded stack for benchmarks: tansu broker, topics and one `spanline worker`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from spanline.embedded.kafka_admin import ensure_topics
from spanline.embedded.service_file import ServiceFile
from spanline.embedded.tansu import TansuBroker
from spanline.queries import run_query
from spanline.settings import Settings, load_settings

BROKER_PORT = 29092
WORKER_WEB_PORT = 26066


@dataclass
class BenchStack:
    home: Path
    settings: Settings
    env: dict[str, str]
    worker: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return self.settings.bootstrap_servers

    def start_worker(self) -> float:
        """Start the worker; returns the seconds until it serves queries (it has joined the group)."""
        started = time.perf_counter()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SPANLINE_")}, **self.env}
        self.worker = subprocess.Popen([sys.executable, "-m", "spanline.cli", "worker"], env=env,
                                       stdout=open(self.home / "worker.log", "ab"), stderr=subprocess.STDOUT)
        while ServiceFile(self.home).read() is None:
            if self.worker.poll() is not None:
                raise RuntimeError(f"the worker exited; see {self.home / 'worker.log'}")
            time.sleep(0.05)
        return time.perf_counter() - started

    def scalar(self, sql: str, **parameters: object) -> object:
        return run_query(self.settings, sql.replace("{db}", self.settings.clickhouse_database), parameters).rows[0][0]

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            self.worker.wait(30)


@contextmanager
def bench_stack(partitions: int = 4, **settings_env: str) -> Iterator[BenchStack]:
    """An embedded broker on BROKER_PORT and a fresh SPANLINE_HOME; the worker is started by the caller."""
    home = Path(tempfile.mkdtemp(prefix="spanline-bench-"))
    env = {"SPANLINE_HOME": str(home), "SPANLINE_EMBEDDED_KAFKA_PORT": str(BROKER_PORT),
           "SPANLINE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{BROKER_PORT}",
           "SPANLINE_WORKER_WEB_PORT": str(WORKER_WEB_PORT), "SPANLINE_TOPIC_PARTITIONS": str(partitions),
           "SPANLINE_BROKER_SESSION_TIMEOUT_S": "2", "SPANLINE_LOG_LEVEL": "WARNING", **settings_env}
    settings = load_settings(env)
    with TansuBroker(BROKER_PORT, log_path=home / "tansu.log"):
        ensure_topics(settings.bootstrap_servers, {settings.topic_spans: partitions, settings.topic_dlq: 1})
        stack = BenchStack(home, settings, env)
        try:
            yield stack
        finally:
            stack.stop_worker()
