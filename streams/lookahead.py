"""Processing the next batch while the current one is stored, so the worker uses both cores.

chDB runs a statement without holding the GIL (the insert and the minute rollup's insert), so
``process_batch`` of the next batch — decode, validate, derive, price: Python and C holding the
GIL — can run on a thread of its own meanwhile. Storing stays as it was: one batch after the
other, ledger intent → raw insert → rollup → windows → dead letters → ack → stored offset.

``process_batch`` reads only the batch, the price catalog and its partition's recent span keys
(re-send detection), and only storing a batch of that same partition changes those keys. So a
batch is processed ahead only while a batch of *another* partition is stored, and
``alternate_partitions`` orders a list of batches so that partitions take turns (order within a
partition, which is all the commit depends on, is kept). A result is used only for the batch and
keys object it was made from, and only once: a retried checkpoint, or keys reloaded after a
failure, process again.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain, zip_longest

from spanline.streams.batcher import Batch
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import ProcessedBatch, process_batch
from spanline.streams.resends import RecentSpans


class BatchProcessor:
    """Runs ``process_batch`` on one thread of its own, at most one batch ahead."""

    def __init__(self, topic: str, catalog: PriceCatalog) -> None:
        self._topic = topic
        self._catalog = catalog
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="BatchProcessor")
        self._ahead: tuple[Batch, RecentSpans | None, Future[ProcessedBatch]] | None = None
        self.ahead_used = 0  # batches whose processing overlapped the previous batch's storing

    def start(self, batch: Batch, recent: RecentSpans | None) -> None:
        """Begin processing ``batch`` (with its partition's keys ``recent``) in the background."""
        future = self._executor.submit(process_batch, batch, self._topic, self._catalog, recent)
        self._ahead = (batch, recent, future)

    async def processed(self, batch: Batch, recent: RecentSpans | None) -> ProcessedBatch:
        """The batch processed: the result started ahead for it if there is one, else now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] is batch and ahead[1] is recent:
            self.ahead_used += 1
            return await asyncio.wrap_future(ahead[2])
        future = self._executor.submit(process_batch, batch, self._topic, self._catalog, recent)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def alternate_partitions(batches: list[Batch]) -> list[Batch]:
    """The batches with partitions taking turns, each partition's batches in their order."""
    by_partition: dict[int, list[Batch]] = defaultdict(list)
    for batch in batches:
        by_partition[batch.partition].append(batch)
    turns = zip_longest(*by_partition.values())
    return [batch for batch in chain.from_iterable(turns) if batch is not None]
