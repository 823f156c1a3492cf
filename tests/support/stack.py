"""A real Spanline stack for end-to-end tests: receiver and worker as separate processes.

Each stack gets its own topics, consumer group, chDB path and ports, so stacks sharing one
broker never see each other's data. Processes are real `spanline` CLI invocations.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from spanline.kafka.admin import ensure_topics
from spanline.settings import Settings, load_settings
from spanline.sql.queries import QueryResult, run_query
from spanline.sql.service_file import ServiceFile
from tests.support.kafka_broker import free_ports

TENANT_KEYS = {"acme": "key-acme-0123456789", "globex": "key-globex-0123456789"}


def free_port() -> int:
    return free_ports(1)[0]


def clean_env() -> dict[str, str]:
    """This process's environment without SPANLINE_*: a child sees only the settings a test gives it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SPANLINE_")}


def embedded_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of `spanline up` or `spanline demo` on the embedded default: its own home
    and free ports for the bundled broker, the receiver and the worker, plus ``extra``."""
    kafka, collector, worker = free_ports(3)
    return (
        clean_env()
        | {
            "SPANLINE_HOME": str(home),
            "SPANLINE_EMBEDDED_KAFKA_PORT": str(kafka),
            "SPANLINE_COLLECTOR_PORT": str(collector),
            "SPANLINE_WORKER_WEB_PORT": str(worker),
        }
        | extra
    )


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A short `spanline demo` (two minutes at five requests per second) as a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "spanline", "demo", "--minutes", "2", "--rate", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )


def up_log_tail(home: Path, chars: int = 3000) -> str:
    """The end of the embedded stack's log in ``home`` (empty before it starts), for failure messages."""
    log = home / "up.log"
    return log.read_text()[-chars:] if log.exists() else ""


def read_topic(bootstrap_servers: str, topic: str) -> list[Any]:
    """Every JSON value on a topic, from the beginning (assigned partitions, no group)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        enable_auto_commit=False,
    )
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    values = [orjson.loads(message.value) for message in consumer]
    consumer.close()
    return values


@dataclass
class Stack:
    bootstrap_servers: str
    home: Path
    partitions: int = 3
    env: dict[str, str] = field(default_factory=dict)
    worker: subprocess.Popen | None = None
    receiver: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        if self.env:  # a sibling's: same topics and consumer group
            self.settings = load_settings(self.env)
            return
        suffix = uuid.uuid4().hex[:8]
        self.env = {
            "SPANLINE_HOME": str(self.home),
            "SPANLINE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "SPANLINE_TOPIC_SPANS": f"spans-{suffix}",
            "SPANLINE_TOPIC_DLQ": f"spans.dlq-{suffix}",
            "SPANLINE_TOPIC_ALERTS": f"alerts-{suffix}",
            "SPANLINE_TOPIC_METRICS": f"metrics-{suffix}",
            "SPANLINE_TOPIC_PARTITIONS": str(self.partitions),
            "SPANLINE_CONSUMER_GROUP": f"worker-{suffix}",
            "SPANLINE_COLLECTOR_PORT": str(free_port()),
            "SPANLINE_WORKER_WEB_PORT": str(free_port()),
            "SPANLINE_API_KEYS": orjson.dumps(TENANT_KEYS).decode(),
            "SPANLINE_BROKER_SESSION_TIMEOUT_S": "6",
            "SPANLINE_BATCH_WITHIN_S": "0.2",
            "SPANLINE_RETRY_INITIAL_S": "0.2",
            "SPANLINE_RETRY_MAX_S": "2",
        }
        self.settings: Settings = load_settings(self.env)
        ensure_topics(
            self.bootstrap_servers,
            {
                self.settings.topic_spans: self.partitions,
                self.settings.topic_dlq: 1,
                self.settings.topic_alerts: 1,
                self.settings.topic_metrics: 1,
            },
        )

    def sibling(self, home: Path) -> Stack:
        """A second worker's stack: same broker, topics and consumer group, its own home (and
        so its own chDB: one process per path) and ports."""
        env = {
            **self.env,
            "SPANLINE_HOME": str(home),
            "SPANLINE_COLLECTOR_PORT": str(free_port()),
            "SPANLINE_WORKER_WEB_PORT": str(free_port()),
        }
        return Stack(self.bootstrap_servers, home, self.partitions, env)

    # --- processes
    def _spawn(self, command: str, log_name: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        env = clean_env()
        env.update(self.env)
        env.update(extra_env or {})
        log = open(self.home / log_name, "ab")
        return subprocess.Popen(
            [sys.executable, "-m", "spanline.cli", command], env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def start_worker(self, extra_env: dict[str, str] | None = None, wait: bool = True) -> None:
        worker = self.worker = self._spawn("worker", "worker.log", extra_env)
        if wait:  # this worker's own file: a killed predecessor's may still name a live-looking pid

            def serving() -> bool:
                service = ServiceFile(self.home).read()
                return service is not None and service.pid == worker.pid

            self.wait_until(serving, 60, "worker query API")

    def start_receiver(self) -> None:
        self.receiver = self._spawn("collect", "receiver.log")
        self.wait_until(lambda: self._get(f"{self.collector_url}/readyz") == 200, 60, "receiver readiness")

    def stop_worker(self, sig: int = signal.SIGTERM) -> None:
        _stop(self.worker, sig)
        self.worker = None

    def close(self) -> None:
        _stop(self.worker, signal.SIGTERM)
        _stop(self.receiver, signal.SIGTERM)

    # --- helpers
    @property
    def collector_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.collector_port}"

    def post(self, path: str, body: bytes, key: str | None, content_type: str = "application/json") -> tuple[int, Any]:
        headers = {"Content-Type": content_type}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(f"{self.collector_url}{path}", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def query(self, sql: str, **parameters: Any) -> QueryResult:
        return run_query(self.settings, sql.replace("{db}", self.settings.clickhouse_database), parameters)

    def scalar(self, sql: str, **parameters: Any) -> Any:
        return self.query(sql, **parameters).rows[0][0]

    def wait_for_count(self, sql: str, expected: int, timeout_s: float = 90, **parameters: Any) -> int:
        deadline = time.monotonic() + timeout_s
        count = -1
        while time.monotonic() < deadline:
            count = int(self.scalar(sql, **parameters))
            if count >= expected:
                return count
            time.sleep(0.3)
        raise AssertionError(f"expected {expected} rows, have {count} after {timeout_s}s; logs in {self.home}")

    def wait_until(self, predicate: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for process in (self.worker, self.receiver):
                if process is not None and process.poll() is not None:
                    raise AssertionError(f"a spanline process exited ({process.returncode}); logs in {self.home}")
            if predicate():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; logs in {self.home}")

    @staticmethod
    def _get(url: str) -> int:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0


def _stop(process: subprocess.Popen | None, sig: int) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
