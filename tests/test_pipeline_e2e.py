"""End to end, against Apache Kafka and tansu: HTTP/OTLP -> Kafka -> Faust worker -> chDB.

Every test goes through the real processes (`spanline collect`, `spanline worker`), a real
broker and chDB; the costs are checked against genai-prices' own calc_price.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from genai_prices import Usage, calc_price
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

import spanline_sdk as sdk
from spanline.contract.hashing import hash_user_id
from spanline.kafka.publish import SpanPublisher
from spanline.streams.pricing.snapshot import CATALOG_ENTRY
from tests.support.metrics import Samples, scrape
from tests.support.prometheus import prometheus_scraping
from tests.support.stack import TENANT_KEYS, Stack, clean_env, free_port, read_topic

pytestmark = pytest.mark.e2e

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PRICED = [  # provider, model, input, output, cache_read, cache_write, reasoning
    ("openai", "gpt-4o", 1200, 300, 200, 0, 0),
    ("openai", "gpt-4o-mini", 5000, 800, 0, 0, 0),
    ("anthropic", "claude-3-5-sonnet", 3000, 500, 1000, 500, 0),
    ("openai", "o3-mini", 900, 2000, 0, 0, 1500),
    ("google", "gemini-1.5-flash", 2000, 400, 0, 0, 0),
]


@pytest.fixture(scope="module")
def stack(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(kafka_broker.bootstrap_servers, tmp_path_factory.mktemp(f"stack-{kafka_broker.name}"))
    stack.start_worker()
    stack.start_receiver()
    yield stack
    stack.close()


def canonical(run: str, index: int, **fields: Any) -> dict[str, Any]:
    base = {
        "span_id": f"{run}-{index}",
        "trace_id": f"{run}-trace-{index // 4}",
        "service": run,
        "feature": "support-chat",
        "kind": "llm",
        "name": "chat",
        "start_time": (START + timedelta(milliseconds=index)).isoformat(),
        "duration_ms": 800.0,
        "ttft_ms": 200.0,
        "provider": "openai",
        "model_requested": "gpt-4o-mini",
        "input_tokens": 100,
        "output_tokens": 10,
    }
    return {**base, **fields}


def expected_cost(provider: str, model: str, inp: int, out: int, cread: int, cwrite: int) -> float:
    usage = Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cread, cache_write_tokens=cwrite)
    price = calc_price(usage, model, provider_id=provider, genai_request_timestamp=START)
    return float(Decimal(price.total_price))


def test_canonical_and_otlp_spans_land_once_with_independent_costs(stack: Stack) -> None:
    run = f"e2e{uuid.uuid4().hex[:6]}"
    spans = [canonical(run, i) for i in range(400)]
    for i, (provider, model, inp, out, cread, cwrite, reasoning) in enumerate(PRICED):
        spans[i].update(
            provider=provider,
            model_requested=model,
            input_tokens=inp,
            output_tokens=out,
            cache_read_tokens=cread,
            cache_write_tokens=cwrite,
            reasoning_tokens=reasoning,
        )
    status, body = stack.post("/v1/spans", orjson.dumps(spans), TENANT_KEYS["acme"])
    assert status == 200, body
    ndjson = b"\n".join(orjson.dumps(canonical(run, i)) for i in range(400, 500))
    status, _ = stack.post("/v1/spans", ndjson, TENANT_KEYS["acme"], "application/x-ndjson")
    assert status == 200
    status, _ = stack.post("/v1/traces", otlp_request(run, 50), TENANT_KEYS["acme"], "application/x-protobuf")
    assert status == 200

    count = stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", 550, s=run)
    assert count == 550
    time.sleep(1.0)
    assert stack.scalar("SELECT count() FROM {db}.spans WHERE service = {s:String}", s=run) == 550
    assert stack.scalar("SELECT uniqExact(span_id) FROM {db}.spans WHERE service = {s:String}", s=run) == 550
    assert stack.scalar("SELECT countIf(source = 'otlp') FROM {db}.spans WHERE service = {s:String}", s=run) == 50
    for i, (provider, model, inp, out, cread, cwrite, _) in enumerate(PRICED):
        stored = stack.query(
            "SELECT cost_usd, cost_known, price_source, price_entry FROM {db}.spans WHERE span_id = {id:String}",
            id=f"{run}-{i}",
        ).rows[0]
        assert stored[1] in (1, True) and stored[2] == "genai-prices" and stored[3] == CATALOG_ENTRY
        assert stored[0] == pytest.approx(expected_cost(provider, model, inp, out, cread, cwrite), rel=1e-9)


def test_mixed_batch_valid_rows_land_invalid_go_to_dlq_with_reasons(stack: Stack) -> None:
    run = f"mix{uuid.uuid4().hex[:6]}"
    items = [canonical(run, i) for i in range(10)]
    items[3]["input_tokens"] = -1
    items[7]["kind"] = "banana"
    items.append({"not": "a span"})
    status, body = stack.post("/v1/spans", orjson.dumps(items), TENANT_KEYS["globex"])
    assert status == 207
    result = orjson.loads(body)
    assert result["accepted"] == 8 and result["rejected"] == 3
    assert [e["index"] for e in result["errors"]] == [3, 7, 10]
    assert result["errors"][0]["errors"][0]["field"] == "input_tokens"
    stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", 8, s=run)
    letters = read_topic(stack.bootstrap_servers, stack.settings.topic_dlq)
    mine = [letter for letter in letters if letter["tenant_id"] == "globex" and run in orjson.dumps(letter).decode()]
    assert sorted(letter["errors"][0]["field"] for letter in mine) == ["input_tokens", "kind"]
    assert all(letter["source"] == "http" and letter["reason"] for letter in mine)


def test_tenant_comes_from_the_key_never_the_payload(stack: Stack) -> None:
    run = f"ten{uuid.uuid4().hex[:6]}"
    spans = [canonical(run, i, tenant_id="globex") for i in range(5)]
    assert stack.post("/v1/spans", orjson.dumps(spans), TENANT_KEYS["acme"])[0] == 200
    assert stack.post("/v1/spans", orjson.dumps(spans), None)[0] == 401
    assert stack.post("/v1/spans", orjson.dumps(spans), "not-a-key")[0] == 403
    stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", 5, s=run)
    tenants = stack.query("SELECT DISTINCT tenant_id FROM {db}.spans WHERE service = {s:String}", s=run).rows
    assert tenants == [["acme"]]


def test_worker_metrics_count_stored_and_dead_lettered_spans_and_report_lag(
    stack: Stack, prometheus_server: str, tmp_path: Path
) -> None:
    """The worker's /metrics (its Faust web port) and the receiver's, parsed, then scraped by a
    real Prometheus with the repository's scrape jobs."""
    run = f"met{uuid.uuid4().hex[:6]}"
    worker_url = f"http://127.0.0.1:{stack.settings.worker_web_port}"
    worker_before, receiver_before = scrape(worker_url), scrape(stack.collector_url)
    assert stack.post("/v1/spans", orjson.dumps([canonical(run, i) for i in range(20)]), TENANT_KEYS["acme"])[0] == 200
    # Straight to Kafka, past the receiver's validation: one invalid span and one undecodable message.
    mixed = [{**canonical(run, i), "tenant_id": "acme"} for i in range(20, 30)] + [
        {**canonical(run, 30), "tenant_id": "acme", "kind": "banana"}
    ]
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap_servers)
    producer.send(stack.settings.topic_spans, key=run.encode(), value=orjson.dumps(mixed))
    producer.send(stack.settings.topic_spans, key=run.encode(), value=b"not json at all")
    producer.flush()
    producer.close()
    stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", 30, s=run)

    def moved(samples: Samples, name: str, **labels: str) -> float:
        return samples.value(name, **labels) - worker_before.value(name, **labels)

    def counted(samples: Samples) -> bool:  # counters move just after a batch's rows are visible
        stored = moved(samples, "spanline_worker_spans_stored_total")
        return stored >= 30 and moved(samples, "spanline_worker_dead_letters_total") >= 2

    stack.wait_until(lambda: counted(scrape(worker_url)), 30, "the stored and dead-lettered counters")
    worker = scrape(worker_url)
    assert moved(worker, "spanline_worker_spans_stored_total") == 30
    assert moved(worker, "spanline_worker_dead_letters_total") == 2
    assert moved(worker, "spanline_worker_spans_consumed_total") == 31  # the undecodable message held no span
    assert moved(worker, "spanline_worker_messages_total") >= 3
    batches = moved(worker, "spanline_worker_batches_total")
    assert batches >= 1 and moved(worker, "spanline_worker_batch_duration_seconds_count") == batches
    assert moved(worker, "spanline_worker_insert_duration_seconds_count") >= 1
    assert worker.value("spanline_worker_insert_duration_seconds_sum") > 0
    receiver = scrape(stack.collector_url)
    accepted = ("spanline_receiver_items_total", {"endpoint": "spans", "outcome": "accepted"})
    assert receiver.value(accepted[0], **accepted[1]) - receiver_before.value(accepted[0], **accepted[1]) == 20
    # Each process exposes what it runs: no idle worker series on the receiver's page, and back.
    assert not any(name.startswith(("spanline_worker", "spanline_alert")) for name, _ in receiver.values)
    assert not any(name.startswith("spanline_receiver") for name, _ in worker.values)

    topic = stack.settings.topic_spans
    partitions = {str(p) for p in range(stack.partitions)}

    def caught_up() -> bool:
        lags = scrape(worker_url).labelled("spanline_worker_consumer_lag_messages", "partition", topic=topic)
        return set(lags) == partitions and all(lag == 0 for lag in lags.values())

    stack.wait_until(caught_up, 30, "a lag gauge of 0 on every partition")

    targets = {
        "spanline-receiver": [stack.collector_url.removeprefix("http://")],
        "spanline-worker": [worker_url.removeprefix("http://")],
    }
    with prometheus_scraping(prometheus_server, tmp_path, targets) as prometheus:

        def scraped() -> bool:
            up = prometheus.query('up{job=~"spanline-.*"} == 1')
            stored = prometheus.query("spanline_worker_spans_stored_total")
            return len(up) == 2 and bool(stored)

        stack.wait_until(scraped, 30, "Prometheus to scrape the receiver and the worker")
        (stored,) = prometheus.query("spanline_worker_spans_stored_total")
        assert float(stored["value"][1]) == scrape(worker_url).value("spanline_worker_spans_stored_total")


def test_sdk_spans_are_stored_as_the_key_s_tenant_with_the_tenant_s_user_hash(stack: Stack) -> None:
    """The SDK's default export, as an application uses it: HTTP with the tenant's API key only."""
    run = f"sdk{uuid.uuid4().hex[:6]}"
    tracer = sdk.configure(run, endpoint=stack.collector_url, api_key=TENANT_KEYS["globex"])
    for i in range(200):
        with sdk.request(name="answer", user_id="alice@example.com", feature="search"):
            with sdk.llm_call(provider="openai", model="gpt-4o-mini", input_tokens=100 + i, output_tokens=10):
                pass
    assert tracer.flush(30)
    sdk.shutdown()
    assert tracer.stats()["sent"] == 400
    stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", 400, s=run)
    stored = stack.query(
        "SELECT tenant_id, groupUniqArray(user_id_hash), countIf(cost_usd > 0), uniqExact(span_id)"
        " FROM {db}.spans WHERE service = {s:String} GROUP BY tenant_id",
        s=run,
    ).rows
    salt = subprocess.run(  # what an in-cluster producer would be given for this tenant
        [sys.executable, "-m", "spanline", "tenant-salt", "globex"],
        env=clean_env() | stack.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert [list(row) for row in stored] == [
        ["globex", [hash_user_id(bytes.fromhex(salt), "alice@example.com")], 200, 400]
    ]


def test_redelivered_batches_are_not_stored_twice(stack: Stack) -> None:
    """A worker in a fresh consumer group re-reads the whole topic: every batch is redelivered."""
    run = f"dup{uuid.uuid4().hex[:6]}"
    assert stack.post("/v1/spans", orjson.dumps([canonical(run, i) for i in range(300)]), TENANT_KEYS["acme"])[0] == 200
    stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", 300, s=run)
    total_before = stack.scalar("SELECT count() FROM {db}.spans")
    stack.stop_worker()
    replay_group = f"replay-{uuid.uuid4().hex[:6]}"
    stack.start_worker({"SPANLINE_CONSUMER_GROUP": replay_group})
    stack.wait_until(lambda: committed_total(stack, replay_group) >= end_total(stack), 90, "the replay to commit")
    assert stack.scalar("SELECT count() FROM {db}.spans") == total_before
    assert stack.scalar("SELECT count() FROM {db}.spans WHERE service = {s:String}", s=run) == 300
    stack.stop_worker()
    stack.start_worker()


def test_worker_sigkill_mid_stream_stores_every_span_exactly_once(stack: Stack) -> None:
    run = f"kill{uuid.uuid4().hex[:6]}"
    publisher = SpanPublisher(stack.bootstrap_servers, stack.settings.topic_spans, spans_per_message=50)
    total = 20_000
    stop = threading.Event()

    def produce() -> None:
        for block in range(0, total, 500):
            batch = [canonical(run, i, tenant_id="acme") for i in range(block, block + 500)]
            publisher.send(batch, "sdk")
            publisher.flush()
            time.sleep(0.05)
            if stop.is_set():
                return

    producer = threading.Thread(target=produce)
    producer.start()
    stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", 2_000, s=run)
    stack.stop_worker(signal.SIGKILL)
    producer.join()
    publisher.close()
    stack.start_worker()
    count = stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", total, 120, s=run)
    time.sleep(1.5)
    assert count == total
    assert stack.scalar("SELECT count() FROM {db}.spans WHERE service = {s:String}", s=run) == total
    assert stack.scalar("SELECT uniqExact(span_id) FROM {db}.spans WHERE service = {s:String}", s=run) == total


def test_clickhouse_down_worker_backs_off_commits_nothing_then_catches_up(stack: Stack) -> None:
    """faust-streaming#606 guard: while inserts fail, no offset may be committed past them."""
    run = f"down{uuid.uuid4().hex[:6]}"
    stack.stop_worker()
    group = f"down-{uuid.uuid4().hex[:6]}"
    refused = f"http://127.0.0.1:{free_port()}"
    stack.start_worker({"SPANLINE_CLICKHOUSE_URL": refused, "SPANLINE_CONSUMER_GROUP": group}, wait=False)
    publisher = SpanPublisher(stack.bootstrap_servers, stack.settings.topic_spans, spans_per_message=20)
    for block in range(0, 2_000, 200):
        publisher.send([canonical(run, i) | {"tenant_id": "acme"} for i in range(block, block + 200)], "sdk")
    publisher.flush()
    publisher.close()
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        assert stack.worker is not None and stack.worker.poll() is None, "worker crashed while ClickHouse was down"
        assert committed_total(stack, group) == 0, "offsets committed for messages that were never stored"
        time.sleep(1)
    assert "storage unavailable" in (stack.home / "worker.log").read_text()
    stalled = scrape(f"http://127.0.0.1:{stack.settings.worker_web_port}")  # the page answers while inserts fail
    assert stalled.value("spanline_worker_retries_total", kind="transient") > 0
    assert stalled.value("spanline_worker_spans_stored_total") == 0
    assert sum(stalled.labelled("spanline_worker_consumer_lag_messages", "partition").values()) > 0
    stack.stop_worker()
    stack.start_worker({"SPANLINE_CONSUMER_GROUP": group})
    stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", 2_000, s=run)
    time.sleep(1)
    assert stack.scalar("SELECT count() FROM {db}.spans WHERE service = {s:String}", s=run) == 2_000
    stack.stop_worker()
    stack.start_worker()


# --- helpers


def otlp_request(run: str, count: int) -> bytes:
    def attr(key: str, value: Any) -> KeyValue:
        any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
        return KeyValue(key=key, value=any_value)

    start_ns = int(START.timestamp() * 1e9)
    spans = [
        OtlpSpan(
            trace_id=uuid.uuid4().bytes,
            span_id=uuid.uuid4().bytes[:8],
            name="chat gpt-4o",
            start_time_unix_nano=start_ns,
            end_time_unix_nano=start_ns + 500_000_000,
            attributes=[
                attr("gen_ai.operation.name", "chat"),
                attr("gen_ai.provider.name", "openai"),
                attr("gen_ai.request.model", "gpt-4o"),
                attr("gen_ai.usage.input_tokens", 100),
                attr("gen_ai.usage.output_tokens", 20),
            ],
        )
        for _ in range(count)
    ]
    resource = ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])
    resource.resource.attributes.append(attr("service.name", run))
    return ExportTraceServiceRequest(resource_spans=[resource]).SerializeToString()


def _group_consumer(stack: Stack, group: str | None = None) -> tuple[KafkaConsumer, list[TopicPartition]]:
    consumer = KafkaConsumer(
        bootstrap_servers=stack.bootstrap_servers,
        group_id=group or stack.settings.consumer_group,
        enable_auto_commit=False,
    )
    topic = stack.settings.topic_spans
    return consumer, [TopicPartition(topic, p) for p in range(stack.partitions)]


def committed_total(stack: Stack, group: str) -> int:
    consumer, partitions = _group_consumer(stack, group)
    total = sum(consumer.committed(tp) or 0 for tp in partitions)
    consumer.close()
    return total


def end_total(stack: Stack) -> int:
    consumer, partitions = _group_consumer(stack)
    total = sum(consumer.end_offsets(partitions).values())
    consumer.close()
    return total
