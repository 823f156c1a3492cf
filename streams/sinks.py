"""Sinks: where processed batches are stored. Retrying lives in the base class.

Like quix-streams' ``BatchingSink``: a subclass implements only ``write()``; the base
retries retryable storage errors with back-off forever (a stuck sink must stall the
pipeline, never skip data; the policy is streams/retry.py); any other error is the data's
(streams/faults.py).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from clickhouse_connect.driver.client import Client

from spanline.retrying import Retry
from spanline.sql.classify import storage_errors
from spanline.sql.client import connect
from spanline.sql.migrate import apply_migrations
from spanline.streams.batcher import Batch
from spanline.streams.isolate import Isolated, isolate
from spanline.streams.ledger import Ledger
from spanline.streams.process import RowsPart
from spanline.streams.rollup import TOKEN_SUFFIX, minute_rollup
from spanline.windows.aggregate import Partials

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Insert settings that make a retried block a no-op, in the table and in every
#: materialized view fed by it (docs/architecture.md, "Facts that shaped the design").
DEDUP_SETTINGS = {"async_insert": 0, "deduplicate_blocks_in_dependent_materialized_views": 1}


class BatchingSink(ABC, Generic[T]):
    """Runs blocking ``write()`` calls on one dedicated thread, retrying until they succeed."""

    def __init__(self, retry: Retry) -> None:
        self._retry = retry
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=type(self).__name__)

    @abstractmethod
    def write(self, batch: T) -> Any:
        """Store one batch, or raise RetryableStorageError (retried) or any other error (data)."""

    async def run(self, function: Any, *args: Any) -> Any:
        """Call ``function`` on the sink's thread (the thread that owns its connection)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def store(self, batch: T) -> Any:
        return await self.retrying(self.write, batch)

    async def retrying(self, function: Any, *args: Any) -> Any:
        """``function(*args)`` on the sink's thread until it no longer fails transiently."""
        return await self._retry.run(lambda: self.run(function, *args), "storage")

    def close(self) -> None:
        self._executor.shutdown(wait=True)


@dataclass(frozen=True)
class InsertPart:
    """Rows of one batch to insert: all of its valid spans, or a range of them (``start..stop-1``)
    when isolating bad spans split the batch."""

    batch: Batch
    part: RowsPart
    whole: bool  # the part covers every span the batch stores: the insert uses the batch's own token


@dataclass(frozen=True)
class StoredRange:
    """Rows ``start..stop-1`` of an insert part that ClickHouse stored (one raw insert)."""

    insert: InsertPart
    start: int
    stop: int


class ClickHouseSpanSink(BatchingSink[InsertPart]):
    """Writes span batches to ``spans`` exactly once, recording each batch in the ledger first."""

    def __init__(
        self, url: str, database: str, topic: str, topic_id: str, ttl_days: int, retry: Retry, password: Any = None
    ) -> None:
        super().__init__(retry)
        self._url, self._database, self._topic, self._topic_id = url, database, topic, topic_id
        self._ttl_days, self._password = ttl_days, password
        self._client: Client | None = None
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

    def record_intent(self, batch: Batch) -> None:
        """Write the batch's bounds to the ledger before any of its rows is inserted."""
        _, ledger = self._ready()
        with storage_errors():
            ledger.record(
                batch.partition, batch.first_offset, batch.last_offset, batch.token(self._topic, self._topic_id)
            )

    def write(self, insert: InsertPart) -> Isolated[None]:
        """Insert the part; rows ClickHouse refuses are isolated and returned as faults.

        Every insert carries a token naming its place in the batch, so a retry or a replay (which
        splits the same rows the same way) is deduplicated by ClickHouse."""
        client, _ = self._ready()

        def insert_rows(start: int, stop: int) -> None:
            with storage_errors():
                client.insert_arrow(
                    f"{self._database}.spans",
                    insert.part.table.slice(start, stop - start),
                    settings={**DEDUP_SETTINGS, "insert_deduplication_token": self._token(insert, start, stop)},
                )

        return isolate(0, len(insert.part.rows), insert_rows)

    def write_rollup(self, stored: StoredRange) -> Isolated[Partials]:
        """Insert the minute rollup of rows the raw insert stored; rows it cannot aggregate are
        isolated and returned as faults.

        Its token is the raw insert's plus a suffix, so a retry, or the replay after a crash
        between the two inserts, adds the minutes once; the hour and day views derive their
        tokens from it (sql/migrations/0010)."""
        client, _ = self._ready()
        token = self._token(stored.insert, stored.start, stored.stop) + TOKEN_SUFFIX
        first = stored.insert.part.start

        def insert_minutes(start: int, stop: int) -> Partials:
            whole = (start, stop) == (stored.start, stored.stop)
            block = minute_rollup(stored.insert.part.rows.iloc[start:stop])
            with storage_errors():
                client.insert_arrow(
                    f"{self._database}.spans_minute",
                    block.table,
                    settings={
                        **DEDUP_SETTINGS,
                        "insert_deduplication_token": token if whole else f"{token}#{first + start}-{first + stop}",
                    },
                )
            return block.partials

        return isolate(stored.start, stored.stop, insert_minutes)

    def _token(self, insert: InsertPart, start: int, stop: int) -> str:
        """The raw insert token of rows ``start..stop-1`` of the part: the batch's own token when
        they are all the batch stores, else the batch's token and the rows' place in it."""
        token = insert.batch.token(self._topic, self._topic_id)
        if insert.whole and start == 0 and stop == len(insert.part.rows):
            return token
        first = insert.part.start
        return f"{token}#{first + start}-{first + stop}"

    def close(self) -> None:
        """Close the connection (chDB admits one data path per process) and the sink's thread."""
        if self._client is not None:
            self._executor.submit(self._client.close).result()
            self._client = self._ledger = None
        super().close()

    def call(self, function: Any, *args: Any) -> Any:
        """``function(client, *args)`` on the sink's connection (run it through ``run``/``retrying``)."""
        client, _ = self._ready()
        with storage_errors():
            return function(client, *args)
