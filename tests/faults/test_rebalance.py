"""Fault: two workers in one consumer group on Apache Kafka, one SIGKILLed mid-traffic (docs/requirements.md §8).

The survivor takes over the killed worker's partitions after the session timeout and resumes
from their last committed offsets; the killed worker comes back and the group rebalances again.
Each worker here stores into its own chDB (chDB admits one process per path), so the test can
see exactly who stored what:

* nothing is lost: every sent span is in one store or the other;
* each store holds each span once (its ingest ledger deduplicates its own redeliveries);
* no Kafka message of any partition is skipped;
* the only spans in both stores are in partitions that moved: their uncommitted tail,
  redelivered from the last commit. With a shared ClickHouse server (docker-compose) the survivor reads the
  same ledger, cuts that tail into the same batches and its inserts carry the same
  deduplication tokens, so the tail is stored once; chDB cannot be shared to show it here.
* the survivor's rollups equal its raw spans; the killed worker's rollups may lack only spans of
  that redelivered tail: a SIGKILL between a batch's raw part and its rollup part leaves the rollup
  to the replay, which here happens in the survivor's store (in a shared store the replay's raw
  insert is deduplicated and its rollup part lands).
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from spanline.kafka.publish import SpanPublisher
from tests.support.stack import Stack

pytestmark = pytest.mark.faults

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PARTITIONS = 4
WAVE = 20_000


@pytest.fixture
def group(apache_kafka: Any, tmp_path: Path) -> Iterator[tuple[Stack, Stack]]:
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    first = Stack(apache_kafka.bootstrap_servers, tmp_path / "first", partitions=PARTITIONS)
    second = first.sibling(tmp_path / "second")
    yield first, second
    first.close()
    second.close()


def spans(run: str, first: int, count: int) -> list[dict[str, Any]]:
    return [
        {
            "span_id": f"{run}-{i}",
            "trace_id": f"{run}-trace-{i // 4}",
            "service": run,
            "feature": "support-chat",
            "kind": "llm",
            "name": "chat",
            "start_time": (START + timedelta(milliseconds=i)).isoformat(),
            "duration_ms": 400.0,
            "provider": "openai",
            "model_requested": "gpt-4o-mini",
            "input_tokens": 40,
            "output_tokens": 6,
        }
        for i in range(first, first + count)
    ]


def messages(stack: Stack, run: str) -> dict[tuple[int, int], int]:
    """(partition, offset) -> spans stored from that Kafka message."""
    rows = stack.query(
        "SELECT kafka_partition, kafka_offset, count() FROM {db}.spans WHERE service = {s:String} "
        "GROUP BY kafka_partition, kafka_offset",
        s=run,
    ).rows
    return {(int(p), int(o)): int(n) for p, o, n in rows}


def stored_once(stack: Stack, run: str) -> tuple[int, int]:
    """(raw rows, spans counted by spans_minute) of the run in one store; each span stored once."""
    rows, distinct = stack.query(
        "SELECT count(), uniqExact(span_id) FROM {db}.spans WHERE service = {s:String}", s=run
    ).rows[0]
    assert rows == distinct, f"{stack.home.name} stored a span twice: {rows} rows, {distinct} spans"
    rolled = stack.scalar("SELECT sum(spans) FROM {db}.spans_minute WHERE service = {s:String}", s=run)
    return int(rows), int(rolled or 0)


def lag(stack: Stack) -> int:
    """Messages of the spans topic the consumer group has not committed yet (read without joining it)."""
    consumer = KafkaConsumer(
        bootstrap_servers=stack.bootstrap_servers, group_id=stack.settings.consumer_group, enable_auto_commit=False
    )
    try:
        partitions = [TopicPartition(stack.settings.topic_spans, p) for p in range(PARTITIONS)]
        ends = consumer.end_offsets(partitions)
        return sum(ends[tp] - (consumer.committed(tp) or 0) for tp in partitions)
    finally:
        consumer.close()


def test_a_killed_workers_partitions_move_to_the_survivor_without_loss(group: tuple[Stack, Stack]) -> None:
    first, second = group
    run = f"rebal{uuid.uuid4().hex[:6]}"
    first.start_worker()
    second.start_worker()
    publisher = SpanPublisher(first.bootstrap_servers, first.settings.topic_spans)
    publisher.send(spans(run, 0, WAVE), "fault-test")
    publisher.flush()
    # Both members got partitions: each stores part of the first wave.
    first.wait_until(
        lambda: min(len(messages(first, run)), len(messages(second, run))) > 0, 120, "both workers storing"
    )
    storing_first = {p for p, _ in messages(first, run)}  # some of its partitions: others may not have stored yet

    # The second wave straddles the kill: half before (the killed worker's uncommitted tail), half
    # after (only the survivor can store and commit it, in every partition).
    publisher.send(spans(run, WAVE, WAVE // 2), "fault-test")
    publisher.flush()
    first.stop_worker(signal.SIGKILL)
    killed_at = time.monotonic()
    publisher.send(spans(run, WAVE + WAVE // 2, WAVE - WAVE // 2), "fault-test")
    publisher.flush()
    publisher.close()
    # The survivor takes the killed worker's partitions over (after the session timeout) and
    # commits the whole topic: messages sent after the kill leave no other way to a zero lag.
    second.wait_until(lambda: lag(second) == 0, 240, "the survivor committing every message")
    takeover_s = time.monotonic() - killed_at
    taken_over = {p for p, _ in messages(second, run)}
    assert storing_first <= taken_over, f"the survivor stored partitions {taken_over}, the killed one {storing_first}"

    first.start_worker()  # comes back (a second rebalance, nothing left to redeliver): its store is readable
    stored = {stack.home.name: messages(stack, run) for stack in (first, second)}
    (first_rows, first_rolled), (second_rows, second_rolled) = (stored_once(stack, run) for stack in (first, second))
    counts = [first_rows, second_rows]
    both = stored["first"] | stored["second"]
    assert sum(both.values()) == 2 * WAVE, f"{2 * WAVE - sum(both.values())} spans lost"
    for partition in range(PARTITIONS):  # no message skipped in any partition
        offsets = sorted(o for p, o in both if p == partition)
        assert offsets == list(range(offsets[0], offsets[-1] + 1)), f"partition {partition}: a gap in {offsets}"

    # Spans in both stores: a moved partition's uncommitted tail, redelivered from its last commit.
    overlap = sorted(set(stored["first"]) & set(stored["second"]))
    moved = {p for p, _ in stored["first"]}  # the killed worker stored only partitions it owned before the kill
    assert {p for p, _ in overlap} <= moved, "a partition that never moved was stored twice"
    duplicated = sum(stored["first"][key] for key in overlap)
    assert second_rolled == second_rows, f"survivor: spans_minute counts {second_rolled}, raw {second_rows}"
    assert first_rows - duplicated <= first_rolled <= first_rows, (
        f"killed worker: spans_minute counts {first_rolled}, raw {first_rows}, redelivered tail {duplicated}"
    )
    print(
        f"rebalance: {sum(counts):,} rows for {2 * WAVE:,} spans; survivor committed everything {takeover_s:.1f} s after the kill; "
        f"{duplicated:,} spans in {len(overlap)} uncommitted message(s) stored by both workers"
    )
