"""The ingest pipeline: Kafka events -> partition batches -> ClickHouse, acking only after storage.

Batches are cut per partition, full ones while the consumer works through a backlog (each
insert and rollup costs per batch as well as per span), whatever arrived once it has caught up.
The checkpoint of one partition batch, in order (as in quix-streams):

1. process: decode, validate, drop re-sent spans, build rows (streams/process.py), on a thread
   of its own while the batch before is stored (streams/lookahead.py);
2. record the batch in the ingest ledger, then insert its rows (the sink isolates rows that
   ClickHouse refuses) and, for each stored block, its minute rollup (streams/rollup.py) with
   a token derived from the block's;
3. add the rolled-up rows' partials (the rollup's own aggregate, not a second one) to the
   partition's minute windows (isolating rows that fail) and emit every window that closes;
4. send the dead letters of everything isolated or invalid, with its reason;
5. remember the stored spans' keys (re-send detection), ack the batch's Kafka events and mark
   its offsets stored: the consumer commits stored offsets only (streams/commit.py).

Every failure is either transient — retried with back-off, never skipped — or a data fault that
costs only the items that cause it (streams/faults.py). A failure that fits neither (a bug in
this orchestration) holds the batch and retries it, logging the error: nothing past it is
acked or committed, and the agent never dies from a message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import pandas as pd

from spanline.contract.dead_letter import dead_letter
from spanline.kafka.publish import SOURCE_HEADER
from spanline.metrics import (
    WORKER_BATCH_SECONDS,
    WORKER_BATCHES,
    WORKER_DEAD_LETTERS,
    WORKER_INSERT_SECONDS,
    WORKER_MESSAGES,
    WORKER_RESEND_KEY_BYTES,
    WORKER_RESENDS_DROPPED,
    WORKER_RETRIES,
    WORKER_SPANS_CONSUMED,
    WORKER_SPANS_STORED,
)
from spanline.retrying import Retry, any_error
from spanline.streams.batcher import Batch, Message, PartitionBatcher
from spanline.streams.commit import StoredOffsets
from spanline.streams.faults import describe
from spanline.streams.isolate import isolate
from spanline.streams.lookahead import BatchProcessor, alternate_partitions
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import DeadLetter, ProcessedBatch, RowsPart
from spanline.streams.resends import RecentSpans
from spanline.streams.retry import transient
from spanline.streams.sinks import ClickHouseSpanSink, InsertPart, StoredRange
from spanline.streams.windows.manager import WindowManager
from spanline.windows.aggregate import Partials

log = logging.getLogger(__name__)

#: Sends dead letters and returns once Kafka acknowledged them.
DeadLetterSender = Callable[[list[DeadLetter]], Awaitable[None]]
#: Acks one Faust event (``stream.ack``).
Acker = Callable[[Any], Awaitable[Any]]
#: Loads the span keys a partition stored below an offset: (partition, offset, recent) -> None.
RecentLoader = Callable[[int, int, RecentSpans], Awaitable[None]]
#: Stored rows of one rollup insert and the partials it wrote (the windows take them as they are).
RolledUp = tuple[RowsPart, Partials]
#: Most batches' worth of messages held back waiting for full batches (bounds the worker's memory).
PENDING_BATCHES = 4
#: Longest a source header is kept: it names a collector, not a payload.
_SOURCE_MAX_CHARS = 64


@dataclass
class PipelineStats:
    messages: int = 0
    spans_in: int = 0
    spans_stored: int = 0
    dead_letters: int = 0
    resends: int = 0  # re-sent spans dropped (stored once already)
    resend_key_bytes: int = 0  # memory held now for re-send detection (16 bytes per stored span's key)
    data_faults: int = 0  # items isolated after a step failed on them (also counted in dead_letters)
    held_batches: int = 0  # steps retried after an unexpected failure
    batches: int = 0
    batches_processed_ahead: int = 0  # processed while the batch before them was stored
    windows_emitted: int = 0
    window_seconds: float = 0.0  # time spent aggregating and emitting windows
    window_emit_seconds: float = 0.0  # of which: sending to `metrics` and recording in metric_windows
    rollup_seconds: float = 0.0  # time spent aggregating and inserting the minute rollup


class IngestPipeline:
    def __init__(
        self,
        topic: str,
        sink: ClickHouseSpanSink,
        catalog: PriceCatalog,
        send_dead_letters: DeadLetterSender,
        windows: WindowManager | None = None,
        *,
        stored: StoredOffsets | None = None,
        resend_window_s: float = 0.0,
        load_recent: RecentLoader | None = None,
        retry: Retry | None = None,
        batch_messages: int | None = None,
        batch_wait_s: float | None = None,
    ) -> None:
        """``batch_messages``: the most messages the stream hands over at once, and in one batch;
        while it hands over that many (a backlog), partitions wait for full batches, at most
        ``batch_wait_s`` (None: every hand-over is cut at once)."""
        self._topic = topic
        self._sink = sink
        self._processor = BatchProcessor(topic, catalog)
        self._send_dead_letters = send_dead_letters
        self._windows = windows
        self.stored = stored or StoredOffsets(topic)
        self._resend_window_ms = round(resend_window_s * 1000)
        self._load_recent = load_recent
        self._recent: dict[int, RecentSpans] = {}
        self._retry = retry or transient()
        #: A step that failed unforeseen is retried like a transient one, logged with its traceback.
        self._hold = replace(
            self._retry,
            retry_if=any_error,
            level=logging.ERROR,
            exc_info=True,
            on_retry=WORKER_RETRIES.labels("unexpected").inc,
        )
        self._batcher = PartitionBatcher(batch_messages)
        self._batch_wait_s = batch_wait_s
        self._ack: Acker | None = None  # the stream's, for batches the tick cuts
        self._busy = asyncio.Lock()  # batches and idle-window ticks never interleave
        self.stats = PipelineStats()

    def forget(self, partitions: set[int]) -> None:
        self._batcher.forget(partitions)
        self.stored.forget(partitions)
        for partition in partitions:
            self._recent.pop(partition, None)
        self._count_key_bytes()
        if self._windows is not None:
            self._windows.forget(partitions)

    def _count_key_bytes(self) -> None:
        self.stats.resend_key_bytes = sum(held.nbytes for held in self._recent.values())
        WORKER_RESEND_KEY_BYTES.set(self.stats.resend_key_bytes)

    async def tick(self) -> None:
        """Periodic work between batches: store batches that waited long enough for more
        messages, advance idle partitions' windows."""
        if self._busy.locked():  # a batch in flight: not idle anyway
            return
        async with self._busy:
            if self._ack is not None and self._batch_wait_s is not None:
                await self._store(self._batcher.cut_waiting(self._batch_wait_s), self._ack)
            if self._windows is not None:
                await self._windows.tick()

    async def handle(self, events: Sequence[Any], ack: Acker) -> None:
        async with self._busy:
            self._ack = ack
            await self._handle(events, ack)

    async def _handle(self, events: Sequence[Any], ack: Acker) -> None:
        messages = [_message(event) for event in events]
        for partition, offset in self._batcher.new_positions(messages).items():
            await self._held(
                f"resume of partition {partition} at offset {offset}", partial(self._resume, partition, offset)
            )
        self._batcher.add(messages)
        self.stats.messages += len(messages)
        WORKER_MESSAGES.inc(len(messages))
        await self._store(self._cut(len(messages)), ack)

    def _cut(self, handed_over: int) -> list[Batch]:
        """Everything once the stream hands over less than it may (caught up) or when
        PENDING_BATCHES batches' worth of messages wait; under a backlog only full batches."""
        limit = self._batcher.max_messages
        if limit is None or handed_over < limit or self._batcher.pending() >= PENDING_BATCHES * limit:
            return self._batcher.cut()
        return self._batcher.cut_full()

    def close(self) -> None:
        """Stop the processing thread (after the batch it may be processing ahead)."""
        self._processor.close()

    async def _store(self, batches: list[Batch], ack: Acker) -> None:
        """Store the batches one after the other, processing each next one while the one before
        it is stored (streams/lookahead.py)."""
        batches = alternate_partitions(batches)
        for index, batch in enumerate(batches):
            following = batches[index + 1] if index + 1 < len(batches) else None
            where = f"checkpoint of partition {batch.partition} offsets {batch.first_offset}-{batch.last_offset}"
            with WORKER_BATCH_SECONDS.time():
                await self._held(
                    where, partial(self._checkpoint, batch, following), (batch.partition, batch.first_offset)
                )
            for message in batch.messages:
                await ack(message.event)
            self.stored.stored(batch.partition, batch.first_offset, batch.last_offset)

    async def _resume(self, partition: int, offset: int) -> None:
        """The partition (re)starts at ``offset``: load what it stored before from ClickHouse."""
        intents = await self._sink.retrying(self._sink.open_intents, partition, offset)
        if intents:
            log.info("partition %d: replaying %d recorded batch(es) from offset %d", partition, len(intents), offset)
        self._batcher.resync(partition, intents)
        self.stored.start(partition, offset)
        await self._reload(partition, offset)

    async def _reload(self, partition: int, offset: int) -> None:
        """Rebuild the partition's windows and recent span keys as they were at ``offset``."""
        if self._windows is not None:
            await self._windows.resume(partition, offset)
        if self._resend_window_ms > 0 and self._load_recent is not None:
            recent = RecentSpans(self._resend_window_ms)
            await self._load_recent(partition, offset, recent)
            self._recent[partition] = recent
            log.info("partition %d: %d span key(s) loaded for re-send detection", partition, len(recent))

    async def _held(
        self, what: str, step: Callable[[], Awaitable[None]], reload_at: tuple[int, int] | None = None
    ) -> None:
        """Run a step until it completes. A failure that escaped it (a bug, not a message: those
        are isolated inside) holds the partition: before each new try its windows and keys are
        reloaded as they were at ``reload_at`` (partition, offset). Nothing after it is acked."""
        failed = False

        async def attempt() -> None:
            nonlocal failed
            try:
                if failed and reload_at is not None:
                    await self._reload(*reload_at)
                await step()
            except Exception:
                failed = True
                self.stats.held_batches += 1
                raise

        await self._hold.run(attempt, what)

    async def _checkpoint(self, batch: Batch, following: Batch | None = None) -> None:
        """Store one batch; ``following``, the batch stored next, is processed meanwhile when it
        belongs to another partition (whose recent keys storing this one cannot change)."""
        recent = self._recent.get(batch.partition)
        processed = await self._processor.processed(batch, recent)
        if following is not None and following.partition != batch.partition:
            self._processor.start(following, self._recent.get(following.partition))
        letters = list(processed.dead_letters)
        stored, rolled_up = await self._insert(batch, processed, letters)
        await self._aggregate(batch, rolled_up, letters)
        await self._send_letters(letters)
        if recent is not None:
            for part in stored:
                recent.add(part.keys, part.stamps)
            self._count_key_bytes()
        spans_stored = sum(len(part.rows) for part in stored)
        self.stats.batches += 1
        self.stats.batches_processed_ahead = self._processor.ahead_used
        self.stats.spans_in += processed.spans_in
        self.stats.spans_stored += spans_stored
        self.stats.dead_letters += len(letters)
        self.stats.resends += processed.resends
        WORKER_BATCHES.inc()
        WORKER_SPANS_CONSUMED.inc(processed.spans_in)
        WORKER_SPANS_STORED.inc(spans_stored)
        WORKER_DEAD_LETTERS.inc(len(letters))
        WORKER_RESENDS_DROPPED.inc(processed.resends)

    async def _insert(
        self, batch: Batch, processed: ProcessedBatch, letters: list[DeadLetter]
    ) -> tuple[list[RowsPart], list[RolledUp]]:
        """Insert the batch's row parts and their minute rollups; returns the stored parts (rows
        ClickHouse refused are dead-lettered and cut out) and the rolled-up ones with their
        partials."""
        if not processed.parts:
            return [], []
        if not batch.replayed:
            await self._sink.retrying(self._sink.record_intent, batch)
        first = processed.parts[0]
        whole = len(processed.parts) == 1 and first.stop - first.start == processed.spans_valid
        stored: list[RowsPart] = []
        rolled_up: list[RolledUp] = []
        for part in processed.parts:
            insert = InsertPart(batch, part, whole)
            with WORKER_INSERT_SECONDS.time():
                outcome = await self._sink.store(insert)
            for index, exc in outcome.faults:
                letters.append(self._row_letter(batch, part, index, f"ClickHouse refused the span: {describe(exc)}"))
            self.stats.data_faults += len(outcome.faults)
            for start, stop, _ in outcome.results:
                rolled_up += await self._roll_up(StoredRange(insert, start, stop), letters)
            stored += [_slice(part, start, stop) for start, stop, _ in outcome.results]
        return stored, rolled_up

    async def _roll_up(self, stored: StoredRange, letters: list[DeadLetter]) -> list[RolledUp]:
        """Add stored rows to the minute rollup (and so to the hour and day ones), right after
        their raw insert. Rows it cannot aggregate are dead-lettered as stored but left out of
        the rollups and the windows (which aggregate the same way)."""
        started = time.perf_counter()
        outcome = await self._sink.retrying(self._sink.write_rollup, stored)
        for index, exc in outcome.faults:
            reason = f"stored, but left out of the rollups and minute windows: {describe(exc)}"
            letters.append(self._row_letter(stored.insert.batch, stored.insert.part, index, reason))
        self.stats.data_faults += len(outcome.faults)
        self.stats.rollup_seconds += time.perf_counter() - started
        return [(_slice(stored.insert.part, start, stop), partials) for start, stop, partials in outcome.results]

    async def _aggregate(self, batch: Batch, rolled_up: list[RolledUp], letters: list[DeadLetter]) -> None:
        """Add rolled-up rows to the partition's windows (taking the rollup's partials), isolating
        rows the windows fail on."""
        if self._windows is None or not rolled_up:
            return
        started = time.perf_counter()
        for part, partials in rolled_up:
            absorb = partial(self._windows_absorb, batch.partition, part.rows, partials)
            outcome = isolate(0, len(part.rows), absorb)
            for index, exc in outcome.faults:
                letters.append(
                    self._row_letter(batch, part, index, f"stored, but left out of the minute windows: {describe(exc)}")
                )
            self.stats.data_faults += len(outcome.faults)
        await self._windows.emit_closed(batch.partition)
        self.stats.window_seconds += time.perf_counter() - started
        self.stats.windows_emitted = self._windows.emitted
        self.stats.window_emit_seconds = self._windows.emit_seconds

    def _windows_absorb(self, partition: int, rows: pd.DataFrame, partials: Partials, start: int, stop: int) -> None:
        assert self._windows is not None
        whole = start == 0 and stop == len(rows)
        self._windows.absorb(partition, rows.iloc[start:stop], partials if whole else None)

    async def _send_letters(self, letters: list[DeadLetter]) -> None:
        """Deliver dead letters; one Kafka refuses (not transiently) is replaced by a bare letter."""
        if not letters:
            return
        try:
            await self._retry.run(lambda: self._send_dead_letters(letters), "Kafka (dead letters)")
        except Exception as exc:
            if len(letters) == 1:
                bare = [_bare_letter(letters[0], exc)]
                await self._retry.run(lambda: self._send_dead_letters(bare), "Kafka (dead letters)")
                return
            middle = len(letters) // 2
            await self._send_letters(letters[:middle])
            await self._send_letters(letters[middle:])

    def _row_letter(self, batch: Batch, part: RowsPart, index: int, reason: str) -> DeadLetter:
        row = part.rows.iloc[index]
        return dead_letter(
            reason=reason,
            source=str(row["source"]),
            dedup_key=f"{self._topic}/{batch.partition}/{int(row['kafka_offset'])}#{int(part.items[index])}",
            payload=row.to_dict(),
            tenant_id=str(row["tenant_id"]),
        )


def _slice(part: RowsPart, start: int, stop: int) -> RowsPart:
    if start == 0 and stop == len(part.rows):
        return part
    return RowsPart(
        part.start + start,
        part.start + stop,
        part.rows.iloc[start:stop],
        part.table.slice(start, stop - start),
        part.keys[start:stop],
        part.stamps[start:stop],
        part.items[start:stop],
    )


def _bare_letter(letter: DeadLetter, exc: BaseException) -> DeadLetter:
    """A letter Kafka refused, reduced to its key and the reason it could not be sent whole."""
    key, _ = letter
    return dead_letter(
        reason=f"dead letter could not be sent whole: {describe(exc)}",
        source="spanline-worker",
        dedup_key=key.decode("utf-8", "replace"),
        payload=None,
    )


def _message(event: Any) -> Message:
    message = event.message
    timestamp = getattr(message, "timestamp", None)
    timestamp_ms = round(timestamp * 1000) if isinstance(timestamp, int | float) and timestamp > 0 else 0
    return Message(message.partition, message.offset, event.value, _source(message.headers), timestamp_ms, event)


def _source(headers: Iterable[tuple[Any, Any]] | Any) -> str:
    """The collector that produced a message, from its ``spanline-source`` header; a missing,
    null, non-UTF-8 or odd header is data like any other, never an error."""
    try:
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or ())
    except TypeError:
        return "kafka"
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            continue
        name, value = pair
        name = name.decode("utf-8", "replace") if isinstance(name, bytes | bytearray) else name
        if name != SOURCE_HEADER or not value:
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)
        return text[:_SOURCE_MAX_CHARS]
    return "kafka"
