"""Sinks: where processed batches are stored. Retry and back-off live in the base class.

Like quix-streams' ``BatchingSink``: a subclass implements only ``write()``; the base
retries retryable storage errors with back-off forever (a stuck sink must stall the
pipeline, never skip data) and lets ``RejectedDataError`` through to be dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import pandas as pd

from spanline.errors import RetryableStorageError
from spanline.sql.classify import storage_errors
from spanline.sql.client import connect
from spanline.sql.migrate import apply_migrations
from spanline.streams.batcher import Batch
from spanline.streams.frame import arrow_rows
from spanline.streams.ledger import Ledger
from spanline.streams.retry import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Insert settings that make a retried block a no-op, in the table and in every
#: materialized view fed by it (NOTES.md "ClickHouse insert dedup").
DEDUP_SETTINGS = {"async_insert": 0, "deduplicate_blocks_in_dependent_materialized_views": 1}


class BatchingSink(ABC, Generic[T]):
    """Runs blocking ``write()`` calls on one dedicated thread, retrying until they succeed."""

    def __init__(self, backoff: Backoff) -> None:
        self._backoff = backoff
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=type(self).__name__)
        self.retries = 0

    @abstractmethod
    def write(self, batch: T) -> None:
        """Store one batch, or raise RetryableStorageError / RejectedDataError."""

    async def run(self, function: Any, *args: Any) -> Any:
        """Call ``function`` on the sink's thread (the thread that owns its connection)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def store(self, batch: T) -> None:
        await self.retrying(self.write, batch)

    async def retrying(self, function: Any, *args: Any) -> Any:
        while True:
            try:
                result = await self.run(function, *args)
            except RetryableStorageError as exc:
                delay = self._backoff.next_delay()
                self.retries += 1
                log.warning("%s: storage unavailable (%s); retrying in %.1fs", type(self).__name__, exc, delay)
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
            return result

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class ClickHouseSpanSink(BatchingSink[tuple[Batch, pd.DataFrame]]):
    """Writes span batches to ``spans`` exactly once, recording each batch in the ledger first."""

    def __init__(
        self, url: str, database: str, topic: str, topic_id: str, ttl_days: int, backoff: Backoff,
        password: Any = None,
    ) -> None:
        super().__init__(backoff)
        self._url, self._database, self._topic, self._topic_id = url, database, topic, topic_id
        self._ttl_days, self._password = ttl_days, password
        self._client: Any = None
        self._ledger: Ledger | None = None

    def _ready(self) -> tuple[Any, Ledger]:
        """Connect and migrate on first use, so a worker starts even while ClickHouse is down."""
        if self._client is None or self._ledger is None:
            with storage_errors():
                client = connect(self._url, password=self._password)
                applied = apply_migrations(client, self._database, self._ttl_days)
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
            self._client, self._ledger = client, Ledger(client, self._database, self._topic, self._topic_id)
        return self._client, self._ledger

    def open_intents(self, partition: int, from_offset: int) -> list[tuple[int, int]]:
        _, ledger = self._ready()
        with storage_errors():
            return ledger.open_intents(partition, from_offset)

    def write(self, batch: tuple[Batch, pd.DataFrame]) -> None:
        cut, rows = batch
        if rows is None or not len(rows):
            return
        client, ledger = self._ready()
        token = cut.token(self._topic, self._topic_id)
        with storage_errors():
            if not cut.replayed:
                ledger.record(cut.partition, cut.first_offset, cut.last_offset, token)
            client.insert_arrow(
                f"{self._database}.spans", arrow_rows(rows),
                settings={**DEDUP_SETTINGS, "insert_deduplication_token": token},
            )

    def call(self, function: Any, *args: Any) -> Any:
        """``function(client, *args)`` on the sink's connection (run it through ``run``/``retrying``)."""
        client, _ = self._ready()
        with storage_errors():
            return function(client, *args)
