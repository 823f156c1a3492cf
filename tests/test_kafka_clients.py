"""A librdkafka producer (confluent-kafka's bundled librdkafka) writing canonical span messages
straight into ``spans`` of the embedded tansu broker, stored by the real worker in chDB.

A raw producer must keep the message contract the receiver keeps (README, "Kafka clients"): a
JSON array of canonical spans with ``tenant_id`` set, keyed by the trace id, on the partition
Kafka's murmur2 partitioner gives that key. librdkafka's default partitioner is CRC32-based, so
the producer sets ``partitioner=murmur2_random``, and the test checks each trace landed where
the receiver (kafka-python) would have put it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import confluent_kafka
import orjson
import pytest
from genai_prices import Usage, calc_price

from spanline.kafka.publish import SOURCE_HEADER, partition_for
from spanline.kafka.tansu import TansuBroker
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TRACES, SPANS_PER_TRACE = 60, 5
MODELS = [("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-sonnet"), ("google", "gemini-1.5-flash")]


@pytest.fixture(scope="module")
def stack(tansu_kafka: TansuBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tansu_kafka.bootstrap_servers, tmp_path_factory.mktemp("librdkafka-stack"))
    stack.start_worker()
    yield stack
    stack.close()


def trace_id(run: str, number: int) -> str:
    return f"{run}-trace-{number}"


def trace(run: str, number: int) -> list[dict[str, Any]]:
    """One trace of LLM calls, as canonical spans a raw producer sends (tenant_id included)."""
    provider, model = MODELS[number % len(MODELS)]
    return [
        {
            "tenant_id": "acme",
            "trace_id": trace_id(run, number),
            "span_id": f"{run}-{number}-{index}",
            "service": run,
            "kind": "llm",
            "name": "chat",
            "start_time": (START + timedelta(seconds=number, milliseconds=index)).isoformat(),
            "duration_ms": 700.0 + index,
            "provider": provider,
            "model_requested": model,
            "input_tokens": 1000 + 10 * number + index,
            "output_tokens": 100 + index,
        }
        for index in range(SPANS_PER_TRACE)
    ]


def cost(span: dict[str, Any]) -> float:
    usage = Usage(input_tokens=span["input_tokens"], output_tokens=span["output_tokens"])
    price = calc_price(usage, span["model_requested"], provider_id=span["provider"], genai_request_timestamp=START)
    return float(Decimal(price.total_price))


def produce(bootstrap_servers: str, topic: str, messages: list[list[dict[str, Any]]]) -> list[tuple[str, int]]:
    """Each trace as one lz4 message keyed by its trace id, acks=all; (trace id, partition) as delivered."""
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "acks": "all",
            "compression.type": "lz4",
            "partitioner": "murmur2_random",  # Kafka's (and kafka-python's) partition of a key
            "enable.idempotence": True,
        }
    )
    delivered: list[tuple[str, int]] = []
    failed: list[str] = []

    def on_delivery(error: confluent_kafka.KafkaError | None, message: confluent_kafka.Message) -> None:
        if error is not None:
            failed.append(str(error))
        else:
            delivered.append((message.key().decode(), message.partition()))

    for spans in messages:
        producer.produce(
            topic,
            key=spans[0]["trace_id"].encode(),
            value=orjson.dumps(spans),
            headers=[(SOURCE_HEADER, b"librdkafka")],
            on_delivery=on_delivery,
        )
    assert producer.flush(30) == 0, "librdkafka did not deliver every message within 30 s"
    assert not failed, failed
    return delivered


def test_librdkafka_producer_spans_are_stored_once_with_right_figures(stack: Stack) -> None:
    assert confluent_kafka.libversion()[0] >= "2.16"
    run = f"rdk{uuid.uuid4().hex[:6]}"
    traces = [trace(run, number) for number in range(TRACES)]
    resent = traces[7]  # a producer retry or a replayed message: the same spans again
    partition = partition_for(resent[0]["trace_id"], stack.partitions)
    # A last trace on the re-sent one's partition: once it is stored, the worker has read past the copy.
    last = next(
        trace(run, n)
        for n in range(TRACES, 10 * TRACES)
        if partition_for(trace_id(run, n), stack.partitions) == partition
    )
    traces.append(last)
    delivered = produce(stack.bootstrap_servers, stack.settings.topic_spans, [*traces[:-1], resent, last])
    assert len(delivered) == len(traces) + 1
    assert all(partition == partition_for(key, stack.partitions) for key, partition in delivered)

    spans = [span for spans in traces for span in spans]
    stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", len(spans), s=run)
    stack.wait_for_count(
        "SELECT count() FROM {db}.spans WHERE trace_id = {t:String}", SPANS_PER_TRACE, t=last[0]["trace_id"]
    )
    stored = stack.query(
        "SELECT span_id, trace_id, kafka_partition, source, input_tokens, output_tokens, cost_usd, cost_known"
        " FROM {db}.spans WHERE service = {s:String}",
        s=run,
    ).rows
    assert len(stored) == len(spans)  # the re-sent trace is stored once
    by_id = {row[0]: row for row in stored}
    assert sorted(by_id) == sorted(span["span_id"] for span in spans)
    for span in spans:
        _, stored_trace, partition, source, inputs, outputs, cost_usd, known = by_id[span["span_id"]]
        assert (stored_trace, source) == (span["trace_id"], "librdkafka")
        assert (inputs, outputs) == (span["input_tokens"], span["output_tokens"])
        assert partition == partition_for(stored_trace, stack.partitions)
        assert known in (1, True) and cost_usd == pytest.approx(cost(span), rel=1e-9)
    rollup = stack.query(
        "SELECT sum(spans), sum(input_tokens), sum(cost_usd) FROM {db}.spans_minute WHERE service = {s:String}", s=run
    ).rows[0]
    assert rollup[0] == len(spans)
    assert rollup[1] == sum(span["input_tokens"] for span in spans)
    assert rollup[2] == pytest.approx(sum(cost(span) for span in spans), rel=1e-9)
