"""Garbage straight into Kafka, end to end: a real broker, the real worker process, chDB.

Undecodable messages and invalid items land in the dead-letter topic with their reasons; the
valid spans of the same messages land in ClickHouse; the worker keeps running and keeps
storing what comes after.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from tests.support.kafka_broker import TansuBroker
from tests.support.stack import Stack, read_topic

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tansu_kafka: TansuBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tansu_kafka.bootstrap_servers, tmp_path_factory.mktemp("bad-input-e2e"), partitions=2)
    stack.start_worker()
    yield stack
    stack.close()


def span(run: str, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "span_id": f"{run}-{n}",
        "trace_id": f"{run}-t{n}",
        "tenant_id": "acme",
        "service": run,
        "kind": "llm",
        "start_time": "2026-11-22T10:00:00Z",
        "duration_ms": 50,
        "input_tokens": 10,
        **fields,
    }


def test_garbage_is_dead_lettered_and_valid_spans_of_the_same_messages_are_stored(stack: Stack) -> None:
    run = f"e2e-{uuid.uuid4().hex[:6]}"
    messages = [
        orjson.dumps([span(run, 1), span(run, 2, input_tokens=-5), span(run, 3), 42, {"kind": "llm"}, span(run, 4)]),
        b"\xff\xfe\x00 not json at all",
        b"[" * 600 + b"]" * 600,  # deep nesting: one item, not an object
        b'[{"span_id": "x", "duration_ms": NaN}]',  # NaN is not JSON
        orjson.dumps([span(run, 5, attributes={f"k{i}": "v" for i in range(300)})]),  # > 256 attributes
        orjson.dumps([span(run, 6, service="s" * 10_000)]),  # enormous string
        orjson.dumps(span(run, 7)),  # a single object is fine
    ]
    expected_letters = 3 + 1 + 1 + 1 + 1 + 1
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap_servers)
    for value in messages:
        producer.send(stack.settings.topic_spans, key=run.encode(), value=value)
    producer.flush()

    stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", 4, s=run)
    stored = {row[0] for row in stack.query("SELECT span_id FROM {db}.spans WHERE service = {s:String}", s=run).rows}
    assert stored == {f"{run}-1", f"{run}-3", f"{run}-4", f"{run}-7"}

    def dead_letters() -> dict[str, dict[str, Any]]:  # by dedup key: a redelivery repeats its letters
        return {letter["dedup_key"]: letter for letter in read_topic(stack.bootstrap_servers, stack.settings.topic_dlq)}

    stack.wait_until(lambda: len(dead_letters()) >= expected_letters, 60, "dead letters")
    letters = list(dead_letters().values())
    assert len(letters) == expected_letters
    reasons = " | ".join(letter["reason"] for letter in letters)
    for fragment in (
        "input_tokens",
        "not a JSON array",
        "a valid dictionary",
        "attributes",
        "service",
        "Field required",
    ):
        assert fragment in reasons, fragment
    assert all(letter["source"] == "kafka" and letter["payload"] is not None for letter in letters)

    # the worker is still alive and storing
    producer.send(stack.settings.topic_spans, key=run.encode(), value=orjson.dumps([span(run, 8)]))
    producer.flush()
    producer.close()
    stack.wait_for_count("SELECT count() FROM {db}.spans WHERE service = {s:String}", 5, s=run)
    assert stack.worker is not None and stack.worker.poll() is None
