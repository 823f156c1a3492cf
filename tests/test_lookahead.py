"""The next batch is processed while the one before it is stored (streams/lookahead.py).

Through the real pipeline on a real chDB: the overlap happens (the next batch is priced while the
raw insert of the one before it is still running), and it changes nothing the exactly-once
argument rests on — a crash in the middle stores nothing twice after the replay, and a failing
insert holds every batch after it, acked and marked stored only once their turn came.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pandas as pd
import pytest

from spanline.errors import RetryableStorageError
from spanline.metrics import WORKER_RESEND_KEY_BYTES
from spanline.streams.batcher import Batch
from spanline.streams.lookahead import alternate_partitions
from spanline.streams.pipeline import IngestPipeline
from spanline.streams.pricing import PriceCatalog
from spanline.streams.sinks import ClickHouseSpanSink, InsertPart, StoredRange
from tests.support.metrics import sample
from tests.test_isolation import FAST_RETRY, Event, KafkaRecord, Outbox, span

DB = "lookahead"
TOPIC = "spans"
#: Longest a test waits for the other thread to reach its step before calling the overlap absent.
OVERLAP_WAIT_S = 20.0


class Crash(BaseException):
    """The worker process dying: not an Exception, so no retry or hold catches it."""


class CountingCatalog(PriceCatalog):
    """The real catalog, counting the batches it priced (each ``process_batch`` prices once)."""

    priced: threading.Semaphore

    def price(self, spans: pd.DataFrame) -> pd.DataFrame:
        self.priced.release()
        return super().price(spans)


class WaitingSink(ClickHouseSpanSink):
    """The real sink; its first raw insert finishes only after the next batch was priced."""

    catalog: CountingCatalog
    overlapped: bool | None = None

    def write(self, insert: InsertPart) -> Any:
        outcome = super().write(insert)
        if self.overlapped is None:
            self.catalog.priced.acquire()  # the first batch's own pricing
            self.overlapped = self.catalog.priced.acquire(timeout=OVERLAP_WAIT_S)
        return outcome


WaitingSinkT = TypeVar("WaitingSinkT", bound=WaitingSink)


class CrashingSink(WaitingSink):
    """... and the process dies after that insert, before its minute rollup."""

    def write_rollup(self, stored: StoredRange) -> Any:
        raise Crash


class FailingSink(ClickHouseSpanSink):
    """The real sink, with ClickHouse unavailable for the first inserts of partition 0; each
    failure records what was acked and marked stored at that moment."""

    pipeline: IngestPipeline
    outbox: Outbox
    failures_left = 3
    seen_while_failing: list[tuple[list[tuple[int, int]], dict[int, int | None]]]

    def write(self, insert: InsertPart) -> Any:
        if insert.batch.partition == 0 and self.failures_left:
            self.failures_left -= 1
            marked = {partition: self.pipeline.stored.next_offset(partition) for partition in (0, 1)}
            self.seen_while_failing.append((list(self.outbox.acked), marked))
            raise RetryableStorageError("ClickHouse is restarting")
        return super().write(insert)


@pytest.fixture
def chdb_url(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'chdb'}"


@pytest.fixture
def sinks(chdb_url: str) -> Iterator[list[ClickHouseSpanSink]]:
    """Sinks a test opens on its chDB path, closed at the end (one at a time: chDB admits one)."""
    opened: list[ClickHouseSpanSink] = []
    yield opened
    for sink in opened:
        sink.close()


def opened(kind: type[WaitingSinkT], chdb_url: str, sinks: list[ClickHouseSpanSink]) -> WaitingSinkT:
    """A waiting sink of ``kind`` on the test's chDB path, with its own counting catalog."""
    catalog = CountingCatalog.load(None)
    catalog.priced = threading.Semaphore(0)
    sink = kind(chdb_url, DB, TOPIC, "topic-id", 30, FAST_RETRY)
    sink.catalog = catalog
    sinks.append(sink)
    return sink


def pipeline_for(
    sink: ClickHouseSpanSink, outbox: Outbox, catalog: PriceCatalog, batch_messages: int | None = None
) -> IngestPipeline:
    async def load_recent(partition: int, offset: int, recent: Any) -> None:
        return None

    return IngestPipeline(
        TOPIC,
        sink,
        catalog,
        outbox.send,
        resend_window_s=3600,
        load_recent=load_recent,
        retry=FAST_RETRY,
        batch_messages=batch_messages,
    )


def events_over(partitions: int, messages: int, first_partition: int = 0, per_message: int = 20) -> list[Event]:
    """``messages`` messages per partition, partitions one after the other, all spans distinct
    (span ids numbered by partition and offset)."""
    events = []
    for partition in range(first_partition, first_partition + partitions):
        for offset in range(messages):
            first = (partition * 1000 + offset) * per_message
            spans = [span(n) for n in range(first, first + per_message)]
            events.append(Event(KafkaRecord(partition, offset, (), 1.0), orjson.dumps(spans)))
    return events


def counts(sink: ClickHouseSpanSink) -> tuple[int, int, int]:
    """Rows in ``spans``, distinct span ids, and spans counted by the minute rollup."""

    def read(client: Any) -> tuple[int, int, int]:
        raw, distinct = client.query(f"SELECT count(), uniqExact(span_id) FROM {DB}.spans").result_rows[0]
        [[rolled_up]] = client.query(f"SELECT sum(spans) FROM {DB}.spans_minute").result_rows
        return int(raw), int(distinct), int(rolled_up)

    result: tuple[int, int, int] = asyncio.run(sink.run(sink.call, read))
    return result


def test_partitions_take_turns_and_each_keeps_its_order() -> None:
    def batch(partition: int, first: int) -> Batch:
        return Batch(partition, first, first, [], replayed=False)

    batches = [batch(0, 0), batch(0, 1), batch(1, 0), batch(2, 0), batch(1, 1), batch(0, 2)]
    assert [(b.partition, b.first_offset) for b in alternate_partitions(batches)] == [
        (0, 0),
        (1, 0),
        (2, 0),
        (0, 1),
        (1, 1),
        (0, 2),
    ]


def test_the_next_batch_is_processed_while_the_one_before_it_is_inserted(
    chdb_url: str, sinks: list[ClickHouseSpanSink]
) -> None:
    sink = opened(WaitingSink, chdb_url, sinks)
    outbox = Outbox()
    pipeline = pipeline_for(sink, outbox, sink.catalog)
    asyncio.run(pipeline.handle(events_over(partitions=3, messages=4), outbox.ack))
    assert sink.overlapped is True  # partition 1's batch was priced while partition 0's was inserted
    assert pipeline.stats.batches == 3 and pipeline.stats.batches_processed_ahead == 2
    assert counts(sink) == (240, 240, 240)
    assert outbox.acked == [(partition, offset) for partition in range(3) for offset in range(4)]
    assert [pipeline.stored.next_offset(partition) for partition in range(3)] == [4, 4, 4]


def test_a_crash_while_one_batch_is_stored_and_the_next_processed_stores_each_span_once(
    chdb_url: str, sinks: list[ClickHouseSpanSink]
) -> None:
    crashing = opened(CrashingSink, chdb_url, sinks)
    outbox = Outbox()
    pipeline = pipeline_for(crashing, outbox, crashing.catalog)
    events = events_over(partitions=2, messages=3)
    with pytest.raises(Crash):
        asyncio.run(pipeline.handle(events, outbox.ack))
    assert crashing.overlapped is True
    pipeline.close()
    assert outbox.acked == [] and [pipeline.stored.next_offset(partition) for partition in (0, 1)] == [0, 0]
    assert counts(crashing) == (60, 60, 0)  # partition 0's raw rows, no rollup yet
    crashing.close()
    sinks.remove(crashing)

    restarted = ClickHouseSpanSink(chdb_url, DB, TOPIC, "topic-id", 30, FAST_RETRY)
    sinks.append(restarted)
    replay = Outbox()
    asyncio.run(pipeline_for(restarted, replay, PriceCatalog.load(None)).handle(events, replay.ack))
    assert counts(restarted) == (120, 120, 120)
    assert replay.acked == [(partition, offset) for partition in range(2) for offset in range(3)]


def test_a_failing_insert_holds_every_batch_after_it(chdb_url: str, sinks: list[ClickHouseSpanSink]) -> None:
    """Partition 1's batch is processed while partition 0's insert keeps failing; it is neither
    stored, acked nor marked stored before partition 0's turn completed, nor is partition 0's
    next batch."""
    sink = FailingSink(chdb_url, DB, TOPIC, "topic-id", 30, FAST_RETRY)
    sinks.append(sink)
    outbox = Outbox()
    pipeline = pipeline_for(sink, outbox, PriceCatalog.load(None), batch_messages=2)
    sink.pipeline, sink.outbox, sink.seen_while_failing = pipeline, outbox, []
    events = events_over(partitions=1, messages=4) + events_over(partitions=1, messages=2, first_partition=1)
    asyncio.run(pipeline.handle(events, outbox.ack))
    assert sink.seen_while_failing == [([], {0: 0, 1: 0})] * 3
    assert pipeline.stats.batches == 3 and pipeline.stats.batches_processed_ahead == 2
    assert outbox.acked == [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3)]
    assert [pipeline.stored.next_offset(partition) for partition in (0, 1)] == [4, 2]
    assert counts(sink) == (120, 120, 120)


def test_a_batch_of_the_partition_being_stored_waits_for_its_keys(
    chdb_url: str, sinks: list[ClickHouseSpanSink]
) -> None:
    """Re-send detection needs the keys the batch before stored: a batch of the same partition
    is processed only after it, so a message produced twice is stored once across batches."""
    sink = ClickHouseSpanSink(chdb_url, DB, TOPIC, "topic-id", 30, FAST_RETRY)
    sinks.append(sink)
    outbox = Outbox()
    pipeline = pipeline_for(sink, outbox, PriceCatalog.load(None), batch_messages=1)
    [first] = events_over(partitions=1, messages=1)
    again = Event(KafkaRecord(0, 1, (), 2.0), first.value)  # the same spans, produced again
    asyncio.run(pipeline.handle([first, again], outbox.ack))
    assert pipeline.stats.batches == 2 and pipeline.stats.batches_processed_ahead == 0
    assert pipeline.stats.resends == 20 and counts(sink) == (20, 20, 20)
    assert pipeline.stats.resend_key_bytes == 16 * 20  # the keys of the 20 spans stored
    assert sample(WORKER_RESEND_KEY_BYTES, "spanline_worker_resend_key_bytes") == 16 * 20
    assert outbox.acked == [(0, 0), (0, 1)]
