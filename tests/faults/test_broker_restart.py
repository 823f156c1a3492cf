"""Fault: the Apache Kafka broker goes down and comes back with its log dirs (docs/requirements.md §8).

While it is down the receiver answers 503 + Retry-After within its producer's delivery
timeout (the expired messages are never delivered later), the HTTP client retries, and the
SDK keeps buffering on its own thread without blocking the caller. The worker rides out the
outage. Afterwards every span sent through either collector is stored exactly once.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import spanline_sdk as sdk
from spanline.contract.hashing import tenant_salt
from spanline.simulator.sender import SendReport, send_chunks
from tests.support.kafka_broker import ApacheKafkaBroker, running_apache_kafka
from tests.support.stack import TENANT_KEYS, Stack

pytestmark = pytest.mark.faults

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HTTP_SPANS = 3_000
SDK_SPANS = 2_000
#: Longest the SDK may take per span on the caller's thread during the outage (generous: loaded CI box).
MAX_SDK_CALL_S = 0.05


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafkaBroker]:
    """A broker of this module's own: restarting the shared one would disturb other tests."""
    with running_apache_kafka(tmp_path_factory.mktemp("restarted-kafka")) as broker:
        yield broker


@pytest.fixture(scope="module")
def stack(broker: ApacheKafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(broker.bootstrap_servers, tmp_path_factory.mktemp("broker-restart"))
    stack.start_worker()
    stack.start_receiver()
    yield stack
    stack.close()


def http_chunks(run: str, phase: int) -> Iterator[list[dict[str, Any]]]:
    """A third of the HTTP spans (phase 0, 1 or 2) in chunks of 100, alternating tenants."""
    per_phase = HTTP_SPANS // 3
    for chunk in range(phase * per_phase // 100, (phase + 1) * per_phase // 100):
        tenant = "acme" if chunk % 2 else "globex"
        yield [span(run, chunk * 100 + i, tenant_id=tenant) for i in range(100)]


def send(stack: Stack, run: str, phase: int) -> SendReport:
    return asyncio.run(
        send_chunks(stack.collector_url, TENANT_KEYS, http_chunks(run, phase), concurrency=2, retry_for_s=240)
    )


def span(run: str, index: int, **fields: Any) -> dict[str, Any]:
    return {
        "span_id": f"{run}-{index}",
        "trace_id": f"{run}-trace-{index // 5}",
        "service": run,
        "feature": "support-chat",
        "kind": "llm",
        "name": "chat",
        "start_time": (START + timedelta(milliseconds=index)).isoformat(),
        "duration_ms": 500.0,
        "provider": "openai",
        "model_requested": "gpt-4o-mini",
        "input_tokens": 50,
        "output_tokens": 5,
        **fields,
    }


def test_spans_sent_around_a_broker_restart_are_stored_exactly_once(broker: ApacheKafkaBroker, stack: Stack) -> None:
    http_run, sdk_run = f"http{uuid.uuid4().hex[:6]}", f"sdk{uuid.uuid4().hex[:6]}"
    tracer = sdk.configure(  # the in-cluster Kafka export, with the tenant's salt only
        sdk_run,
        kafka_bootstrap_servers=stack.bootstrap_servers,
        kafka_topic=stack.settings.topic_spans,
        tenant_id="acme",
        tenant_salt=tenant_salt(b"any master secret", "acme"),
        flush_interval_s=0.1,
    )
    slowest_call_s = 0.0

    def emit_sdk_spans(first: int, last: int) -> None:
        nonlocal slowest_call_s
        for _index in range(first, last):
            started = time.perf_counter()
            with sdk.llm_call(provider="openai", model_requested="gpt-4o-mini", name="chat") as call:
                call.set(input_tokens=20, output_tokens=4)
            slowest_call_s = max(slowest_call_s, time.perf_counter() - started)

    emit_sdk_spans(0, SDK_SPANS // 2)
    assert tracer.flush(timeout_s=30), "SDK spans were not acknowledged before the outage"

    before = send(stack, http_run, 0)
    broker.stop()
    outage_started = time.monotonic()
    during: dict[str, SendReport] = {}
    sender = threading.Thread(target=lambda: during.update(report=send(stack, http_run, 1)))
    sender.start()  # gets 503 + Retry-After while Kafka is away, and retries
    emit_sdk_spans(SDK_SPANS // 2, SDK_SPANS)  # buffered by the SDK
    time.sleep(max(0.0, 25 - (time.monotonic() - outage_started)))  # past the receiver's 15 s Kafka deadline
    assert stack.worker is not None and stack.worker.poll() is None, "the worker died during the outage"
    broker.start()
    sender.join(timeout=300)
    assert not sender.is_alive(), "the HTTP sender never finished"
    after = send(stack, http_run, 2)
    for report in (before, during["report"], after):
        assert report.accepted == HTTP_SPANS // 3 and report.rejected == 0
    assert during["report"].retries > 0, "no 503 during the outage: the test did not exercise it"
    assert tracer.flush(timeout_s=90), f"the SDK did not deliver its buffer after the restart: {tracer.stats()}"
    assert tracer.stats()["dropped"] == 0
    sdk.shutdown()
    assert slowest_call_s < MAX_SDK_CALL_S, f"an SDK call blocked the caller for {slowest_call_s * 1000:.1f} ms"

    for run, expected in ((http_run, HTTP_SPANS), (sdk_run, SDK_SPANS)):
        stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", expected, 180, s=run)
    time.sleep(2)  # a late duplicate would land now
    for run, expected in ((http_run, HTTP_SPANS), (sdk_run, SDK_SPANS)):
        stored = stack.query(
            "SELECT count(), uniqExact(span_id) FROM {db}.spans WHERE service = {s:String}", s=run
        ).rows[0]
        assert list(stored) == [expected, expected], f"{run}: stored (rows, distinct spans) = {stored}"
