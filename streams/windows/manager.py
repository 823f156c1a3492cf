"""The worker's windows: one PartitionWindows per assigned partition, emission, idle partitions.

Emission order for a closed window: send the record to ``metrics`` and wait for Kafka's ack,
then record it in ``metric_windows`` (changelog.py), and only then does the pipeline ack the
batch's Kafka events. A crash before the ack re-forms the same batch (ingest ledger) on
restart and closes the same window again; a crash between the Kafka ack and the
``metric_windows`` row re-emits an identical record, which MinuteMerger drops by
(partition, minute).

Idle partitions: event time only moves when spans arrive, so a partition whose traffic
stops would hold its last windows (and the merger) forever. After ``idle_s`` of wall clock
without a message, a partition's event time runs on with the wall clock (high and root high =
their last values + the time since its last message), provided it has no backlog: either the whole worker
has been quiet that long (traffic stopped), or the partition's next offset has reached the
high watermark of the consumer's last fetch (this partition stopped while others go on).
The backlog check matters: while a worker catches up it serves partitions in turns, a waiting
partition looks idle, and advancing it would turn its backlog into late spans. tansu reports
the last producer batch's base offset + 1 as high watermark (docs/architecture.md), which can hide at most
that batch. Partitions that never report at all are handled by the merger (merger.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pandas as pd

from spanline.metrics import WORKER_WINDOWS_EMITTED
from spanline.streams.windows.changelog import Changelog
from spanline.streams.windows.state import PartitionWindows
from spanline.windows.aggregate import Partials
from spanline.windows.records import WindowRecord, encode

log = logging.getLogger(__name__)

#: Sends (key, value) messages to the metrics topic in order; returns once Kafka acknowledged all.
Publisher = Callable[[list[tuple[bytes, bytes]]], Awaitable[None]]
#: Runs ``function(client, *args)`` on the sink's thread, retrying while ClickHouse is down.
StorageCall = Callable[..., Awaitable[Any]]
#: Whether a partition has no backlog: (partition, next offset to process) -> caught up.
CaughtUp = Callable[[int, int], bool]


class WindowManager:
    def __init__(
        self,
        changelog: Changelog,
        storage: StorageCall,
        publish: Publisher,
        lateness_s: float,
        idle_s: float,
        caught_up: CaughtUp = lambda partition, next_offset: True,
        clock: Callable[[], float] = time.monotonic,
        grace_s: float | None = None,
    ) -> None:
        self._changelog = changelog
        self._storage = storage
        self._publish = publish
        self._lateness_ms = round(lateness_s * 1000)
        self._grace_ms = None if grace_s is None else round(grace_s * 1000)
        self._idle_s = idle_s
        self._caught_up = caught_up
        self._clock = clock
        self._partitions: dict[int, PartitionWindows] = {}
        # partition -> (clock, high_ms, root_high_ms) at its last message
        self._last_message: dict[int, tuple[float, int, int | None]] = {}
        self.emitted = 0
        self.emit_seconds = 0.0  # sending to Kafka (acks awaited) and recording in metric_windows

    def partition(self, partition: int) -> PartitionWindows | None:
        return self._partitions.get(partition)

    async def resume(self, partition: int, offset: int) -> None:
        """The partition (re)starts at ``offset``: rebuild its state from ClickHouse."""
        state = await self._storage(self._changelog.rebuild, partition, offset, self._lateness_ms, self._grace_ms)
        self._partitions[partition] = state
        self._last_message.pop(partition, None)
        log.info(
            "partition %d: windows resumed at offset %d (frontier %s, %d open minute(s), %d late)",
            partition,
            offset,
            state.frontier,
            len(state.open_minutes),
            state.late_spans,
        )

    def absorb(self, partition: int, rows: pd.DataFrame, partials: Partials | None = None) -> None:
        """Aggregate stored rows (or take their ``partials``) into the partition's open windows
        (a failure changes nothing)."""
        state = self._partitions[partition]
        state.add(rows, partials)
        self._last_message[partition] = (self._clock(), state.high_ms or 0, state.root_high_ms)

    async def emit_closed(self, partition: int) -> None:
        """Emit every window of the partition that the absorbed rows closed."""
        await self._emit(self._partitions[partition].close())

    async def tick(self) -> None:
        """Advance idle partitions (called periodically, never concurrently with ``add``)."""
        now = self._clock()
        latest = max((seen for seen, _, _ in self._last_message.values()), default=now)
        worker_quiet = now - latest >= self._idle_s
        for partition, state in self._partitions.items():
            seen = self._last_message.get(partition)
            if seen is None:
                self._last_message[partition] = (now, state.high_ms or 0, state.root_high_ms)
                continue
            quiet_s = now - seen[0]
            if quiet_s < self._idle_s or state.high_ms is None:
                continue
            if not worker_quiet and not self._caught_up(partition, state.through_offset + 1):
                continue
            quiet_ms = round(quiet_s * 1000)
            state.advance(seen[1] + quiet_ms, None if seen[2] is None else seen[2] + quiet_ms)
            await self._emit(state.close())

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)
            self._last_message.pop(partition, None)

    async def _emit(self, records: list[WindowRecord]) -> None:
        """One partition's closed windows: all sent (in minute order) and acked, then recorded."""
        if not records:
            return
        started = time.perf_counter()
        payloads = [encode(record) for record in records]
        await self._publish([(record.key, payload) for record, payload in zip(records, payloads, strict=False)])
        await self._storage(self._changelog.record, records, payloads)
        self.emitted += len(records)
        WORKER_WINDOWS_EMITTED.inc(len(records))
        self.emit_seconds += time.perf_counter() - started
