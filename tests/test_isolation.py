"""Data faults cost only the items that cause them (streams/isolate.py, faults.py, pipeline.py).

A step that fails on some span's content — pricing, an insert ClickHouse refuses — is bisected
down to the failing spans, which are dead-lettered with the exception as the reason; every other
span is stored, exactly once even when the batch is processed again. The ingest pipeline runs here
against a real chDB with the real sink; its input events are Faust-shaped records of Kafka
messages with the odd headers and values a broker can deliver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanline.errors import RetryableStorageError
from spanline.retrying import Retry
from spanline.streams.batcher import Batch, Message
from spanline.streams.faults import is_transient
from spanline.streams.isolate import isolate
from spanline.streams.pipeline import IngestPipeline
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch
from spanline.streams.sinks import ClickHouseSpanSink

DB = "isolation"
TOPIC = "spans"
START = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
FAST_RETRY = Retry(is_transient, initial_s=0.01, max_s=0.05)


def span(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "span_id": f"s{n}",
        "trace_id": f"t{n}",
        "tenant_id": "globex",
        "service": "svc",
        "kind": "llm",
        "provider": "openai",
        "model_requested": "gpt-4o-mini",
        "start_time": (START + timedelta(seconds=n)).isoformat(),
        "duration_ms": 100.0,
        "input_tokens": 10,
        "output_tokens": 5,
        **fields,
    }


class PoisonedCatalog(PriceCatalog):
    """The real catalog, except that pricing a batch holding the model ``poison`` fails, as a
    pricing bug triggered by one span's content would."""

    def price(self, spans: pd.DataFrame) -> pd.DataFrame:
        if (spans["model_requested"] == "poison").any():
            raise ZeroDivisionError("pricing blew up")
        return super().price(spans)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.integers(1, 200).flatmap(lambda size: st.tuples(st.just(size), st.sets(st.integers(0, size - 1)))))
def test_isolate_finds_exactly_the_failing_items(case: tuple[int, set[int]]) -> None:
    size, bad = case

    def step(start: int, stop: int) -> tuple[int, int]:
        if bad & set(range(start, stop)):
            raise ValueError("bad item in range")
        return start, stop

    outcome = isolate(0, size, step)
    assert sorted(index for index, _ in outcome.faults) == sorted(bad)
    covered = [index for start, stop, _ in outcome.results for index in range(start, stop)]
    assert covered == sorted(set(range(size)) - bad)  # in order, disjoint, everything good
    assert all(isinstance(exc, ValueError) for _, exc in outcome.faults)


def test_isolate_lets_transient_failures_through_to_be_retried() -> None:
    def step(start: int, stop: int) -> None:
        raise RetryableStorageError("ClickHouse is restarting")

    with pytest.raises(RetryableStorageError):
        isolate(0, 10, step)


def test_a_span_that_breaks_pricing_is_dead_lettered_and_the_rest_is_priced() -> None:
    spans = [span(n) for n in range(7)]
    spans[4]["model_requested"] = "poison"
    batch = Batch(
        3,
        20,
        21,
        [
            Message(3, 20, orjson.dumps(spans[:5]), "receiver", 1),
            Message(3, 21, orjson.dumps(spans[5:]), "receiver", 1),
        ],
        replayed=False,
    )
    processed = process_batch(batch, TOPIC, PoisonedCatalog.load(None))
    assert processed.rows is not None and sorted(processed.rows["span_id"]) == ["s0", "s1", "s2", "s3", "s5", "s6"]
    assert (processed.rows["cost_usd"] > 0).all()
    [(key, value)] = processed.dead_letters
    letter = orjson.loads(value)
    assert key == b"spans/3/20#4" and letter["dedup_key"] == "spans/3/20#4" and letter["tenant_id"] == "globex"
    assert letter["reason"] == "span could not be processed: ZeroDivisionError: pricing blew up"
    assert letter["payload"]["span_id"] == "s4"


# --- the pipeline on chDB


@dataclass
class KafkaRecord:
    """The fields of a consumed Kafka message the pipeline reads (Faust's ``event.message``)."""

    partition: int
    offset: int
    headers: Any
    timestamp: float


@dataclass
class Event:
    message: KafkaRecord
    value: bytes | None


@dataclass
class Outbox:
    letters: list[dict[str, Any]] = field(default_factory=list)
    acked: list[tuple[int, int]] = field(default_factory=list)

    async def send(self, letters: list[tuple[bytes, bytes]]) -> None:
        self.letters += [orjson.loads(value) for _, value in letters]

    async def ack(self, event: Event) -> None:
        self.acked.append((event.message.partition, event.message.offset))


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[ClickHouseSpanSink]:
    sink = ClickHouseSpanSink(f"chdb://{tmp_path / 'chdb'}", DB, TOPIC, "topic-id", 30, FAST_RETRY)
    yield sink
    sink.close()


def pipeline_for(sink: ClickHouseSpanSink, outbox: Outbox, catalog: PriceCatalog | None = None) -> IngestPipeline:
    async def load_recent(partition: int, offset: int, recent: Any) -> None:
        return None

    return IngestPipeline(
        TOPIC,
        sink,
        catalog or PriceCatalog.load(None),
        outbox.send,
        resend_window_s=3600,
        load_recent=load_recent,
        retry=FAST_RETRY,
    )


def stored_ids(sink: ClickHouseSpanSink) -> list[str]:
    result = asyncio.run(
        sink.run(
            sink.call, lambda client: client.query(f"SELECT span_id FROM {DB}.spans ORDER BY span_id").result_columns
        )
    )
    return list(result[0]) if result else []


def test_odd_messages_and_headers_cost_nobody_else_and_offsets_are_marked_stored(sink: ClickHouseSpanSink) -> None:
    outbox = Outbox()
    pipeline = pipeline_for(sink, outbox, PoisonedCatalog.load(None))
    good = [span(n) for n in range(4)]
    events = [
        Event(KafkaRecord(0, 0, [("spanline-source", None)], 1.0), orjson.dumps(good[:2])),
        Event(KafkaRecord(0, 1, [("spanline-source", b"\xff\xfe")], 1.0), None),  # tombstone
        Event(KafkaRecord(0, 2, None, 1.0), b""),
        Event(
            KafkaRecord(0, 3, [(b"spanline-source", b"sdk"), ("spanline-source", b"dup")], 1.0),
            orjson.dumps([span(9, model_requested="poison"), good[2]]),
        ),
        Event(KafkaRecord(0, 4, [("x", b"y")], 0.0), orjson.dumps(good[3])),
        Event(KafkaRecord(0, 5, (), 2.0), orjson.dumps(good[:2])),  # the first message produced again
    ]
    asyncio.run(pipeline.handle(events, outbox.ack))
    assert stored_ids(sink) == ["s0", "s1", "s2", "s3"]
    reasons = {letter["dedup_key"]: letter["reason"] for letter in outbox.letters}
    assert reasons == {
        "spans/0/1": "message is not a JSON array of spans",
        "spans/0/2": "message is not a JSON array of spans",
        "spans/0/3#0": "span could not be processed: ZeroDivisionError: pricing blew up",
    }
    assert outbox.acked == [(0, offset) for offset in range(6)]
    assert pipeline.stored.next_offset(0) == 6
    assert pipeline.stats.resends == 2 and pipeline.stats.spans_stored == 4


def test_rows_clickhouse_refuses_are_isolated_and_a_replay_stores_nothing_twice(sink: ClickHouseSpanSink) -> None:
    outbox = Outbox()
    asyncio.run(
        sink.run(
            sink.call,
            lambda client: client.command(
                f"ALTER TABLE {DB}.spans ADD CONSTRAINT no_poison CHECK service != 'refused'"
            ),
        )
    )
    spans = [span(n) for n in range(9)]
    spans[2]["service"] = spans[7]["service"] = "refused"
    events = [
        Event(KafkaRecord(1, offset, (), 1.0), orjson.dumps(spans[offset * 3 : offset * 3 + 3])) for offset in range(3)
    ]
    asyncio.run(pipeline_for(sink, outbox).handle(events, outbox.ack))
    expected = sorted(f"s{n}" for n in range(9) if n not in (2, 7))
    assert stored_ids(sink) == expected
    assert sorted(letter["dedup_key"] for letter in outbox.letters) == ["spans/1/0#2", "spans/1/2#1"]
    assert all(
        "ClickHouse refused the span" in letter["reason"] and "VIOLATED_CONSTRAINT" in letter["reason"]
        for letter in outbox.letters
    )
    # a crash before the ack: another worker redelivers the batch; the ledger cuts it the same way,
    # the same spans fail and the rest carries the same insert tokens
    replay = Outbox()
    asyncio.run(pipeline_for(sink, replay).handle(events, replay.ack))
    assert stored_ids(sink) == expected
    assert sorted(letter["dedup_key"] for letter in replay.letters) == ["spans/1/0#2", "spans/1/2#1"]


def test_a_backlog_waits_for_full_batches_and_the_tick_stores_what_waited(sink: ClickHouseSpanSink) -> None:
    """Hand-overs as large as allowed (a backlog) store only full batches; a smaller one (caught
    up) stores everything; a tick stores what waited ``batch_wait_s``. Nothing is acked or marked
    stored before it is stored."""
    outbox = Outbox()
    pipeline = IngestPipeline(
        TOPIC, sink, PriceCatalog.load(None), outbox.send, retry=FAST_RETRY, batch_messages=4, batch_wait_s=0.0
    )
    events = [
        Event(KafkaRecord(offset % 2, offset // 2, (), 1.0), orjson.dumps([span(offset)])) for offset in range(12)
    ]

    async def run() -> None:
        await pipeline.handle(events[:4], outbox.ack)  # two messages per partition: not full
        assert outbox.acked == [] and pipeline.stats.batches == 0
        await pipeline.handle(events[4:8], outbox.ack)  # four per partition: two full batches
        assert sorted(outbox.acked) == [(p, o) for p in (0, 1) for o in range(4)]
        await pipeline.handle(events[8:12], outbox.ack)  # a backlog again: two per partition wait
        assert len(outbox.acked) == 8 and pipeline.stored.next_offset(0) == 4
        await pipeline.tick()  # they waited batch_wait_s
        assert sorted(outbox.acked) == [(p, o) for p in (0, 1) for o in range(6)]

    asyncio.run(run())
    assert stored_ids(sink) == sorted(f"s{n}" for n in range(12))
    assert pipeline.stats.batches == 4
