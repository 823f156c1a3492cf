"""The ingest pipeline: Kafka events -> partition batches -> ClickHouse, acking only after storage.

Order of a checkpoint (as in quix-streams): dead letters are delivered and the batch is
stored (sink flushed) first, then its stored rows are aggregated into the partition's
minute windows and every window that closes is emitted (streams/windows); only then are its
Kafka events acked, and Faust commits acked offsets. An exception never escapes between storing and acking, so an offset is never
committed for a message that is not stored (faust-streaming#606 is about exactly that).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from spanline.collectors.dead_letter import dead_letter
from spanline.collectors.publish import SOURCE_HEADER
from spanline.errors import RejectedDataError
from spanline.streams.batcher import Batch, Message, PartitionBatcher
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import DeadLetter, process_batch
from spanline.streams.sinks import ClickHouseSpanSink
from spanline.streams.windows.manager import WindowManager

log = logging.getLogger(__name__)

#: Sends dead letters and returns once Kafka acknowledged them.
DeadLetterSender = Callable[[list[DeadLetter]], Awaitable[None]]
#: Acks one Faust event (``stream.ack``).
Acker = Callable[[Any], Awaitable[Any]]


@dataclass
class PipelineStats:
    messages: int = 0
    spans_in: int = 0
    spans_stored: int = 0
    dead_letters: int = 0
    batches: int = 0
    windows_emitted: int = 0
    window_seconds: float = 0.0  # time spent aggregating and emitting windows
    window_emit_seconds: float = 0.0  # of which: sending to `metrics` and recording in metric_windows


class IngestPipeline:
    def __init__(
        self, topic: str, sink: ClickHouseSpanSink, catalog: PriceCatalog, send_dead_letters: DeadLetterSender,
        windows: WindowManager | None = None,
    ) -> None:
        self._topic = topic
        self._sink = sink
        self._catalog = catalog
        self._send_dead_letters = send_dead_letters
        self._windows = windows
        self._batcher = PartitionBatcher()
        self._busy = asyncio.Lock()  # batches and idle-window ticks never interleave
        self.stats = PipelineStats()

    def forget(self, partitions: set[int]) -> None:
        self._batcher.forget(partitions)
        if self._windows is not None:
            self._windows.forget(partitions)

    async def tick(self) -> None:
        """Periodic work between batches: advance idle partitions' windows."""
        if self._windows is not None and not self._busy.locked():  # a batch in flight: not idle anyway
            async with self._busy:
                await self._windows.tick()

    async def handle(self, events: Sequence[Any], ack: Acker) -> None:
        async with self._busy:
            await self._handle(events, ack)

    async def _handle(self, events: Sequence[Any], ack: Acker) -> None:
        messages = [_message(event) for event in events]
        for partition, offset in self._batcher.new_positions(messages).items():
            intents = await self._sink.retrying(self._sink.open_intents, partition, offset)
            if intents:
                log.info("partition %d: replaying %d recorded batch(es) from offset %d", partition, len(intents), offset)
            self._batcher.resync(partition, intents)
            if self._windows is not None:
                await self._windows.resume(partition, offset)
        self._batcher.add(messages)
        self.stats.messages += len(messages)
        for batch in self._batcher.cut():
            await self._store(batch)
            for message in batch.messages:
                await ack(message.event)

    async def _store(self, batch: Batch) -> None:
        processed = await self._sink.run(process_batch, batch, self._topic, self._catalog)
        letters = processed.dead_letters
        stored = 0 if processed.rows is None else len(processed.rows)
        try:
            await self._sink.store((batch, processed.rows))
        except RejectedDataError as exc:
            log.error("ClickHouse rejected partition %d offsets %d-%d: %s; dead-lettering its rows",
                      batch.partition, batch.first_offset, batch.last_offset, exc)
            letters = letters + _rejected_rows(batch, processed.rows, str(exc), self._topic)
            stored = 0
        if letters:
            await self._send_dead_letters(letters)
        if self._windows is not None and stored:
            started = time.perf_counter()
            await self._windows.add(batch.partition, processed.rows)
            self.stats.window_seconds += time.perf_counter() - started
            self.stats.windows_emitted = self._windows.emitted
            self.stats.window_emit_seconds = self._windows.emit_seconds
        self.stats.batches += 1
        self.stats.spans_in += processed.spans_in
        self.stats.spans_stored += stored
        self.stats.dead_letters += len(letters)


def _message(event: Any) -> Message:
    message = event.message
    headers = dict(message.headers or ())
    source = headers.get(SOURCE_HEADER, b"kafka")
    return Message(message.partition, message.offset, event.value, source.decode(errors="replace"), event)


def _rejected_rows(batch: Batch, rows: Any, reason: str, topic: str) -> list[DeadLetter]:
    records = rows.to_dict(orient="records")
    return [
        dead_letter(
            reason=f"ClickHouse rejected the batch: {reason}",
            source=str(record["source"]),
            dedup_key=f"{topic}/{batch.partition}/{record['kafka_offset']}/{record['span_id']}",
            payload=record,
            tenant_id=str(record["tenant_id"]),
        )
        for record in records
    ]
