"""Cutting each partition's messages into insert batches that a redelivery re-forms exactly.

A ClickHouse insert is deduplicated by its ``insert_deduplication_token``, derived from the
batch's (topic, topic id, partition, first offset, last offset). That only protects a redelivered
batch if it is cut at the same offsets again. So before a batch is inserted its bounds are
written to a ledger (a write-ahead intent); after a restart or rebalance, messages that fall
inside a recorded intent are cut at that intent's bounds again, and only messages beyond
every intent are batched freely.

Under a backlog a partition's messages wait for a full batch (``max_messages``): every insert
and minute rollup has a cost per batch that large batches spread over more spans. Once the
consumer has caught up, or a partition's oldest message has waited long enough, whatever
arrived is cut, so a quiet stream is stored as soon as it was read.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    value: bytes | None  # None: a tombstone (null value), dead-lettered like any undecodable message
    source: str
    timestamp_ms: int = 0  # the Kafka message's timestamp (streams/resends.py measures re-sends by it)
    event: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Batch:
    partition: int
    first_offset: int
    last_offset: int
    messages: list[Message]
    replayed: bool

    def token(self, topic: str, topic_id: str) -> str:
        """The insert_deduplication_token: the batch's place in one incarnation of the topic."""
        return f"{topic}:{topic_id}:{self.partition}:{self.first_offset}-{self.last_offset}"


class PartitionBatcher:
    """Holds unprocessed messages per partition and cuts them into batches."""

    def __init__(self, max_messages: int | None = None) -> None:
        """``max_messages``: most messages in one free batch (None: no limit)."""
        self.max_messages = max_messages
        self._pending: dict[int, list[Message]] = defaultdict(list)
        self._intents: dict[int, list[tuple[int, int]]] = {}
        self._next_offset: dict[int, int] = {}
        self._waiting_since: dict[int, float] = {}  # monotonic time the oldest pending message arrived

    def new_positions(self, messages: list[Message]) -> dict[int, int]:
        """Partitions seen for the first time or rewound (startup, rebalance, redelivery), with
        the offset they now start at: their recorded intents must be loaded. A forward gap
        (compacted or control records) is not a new position."""
        starts: dict[int, int] = {}
        next_offset = dict(self._next_offset)
        for message in messages:
            expected = next_offset.get(message.partition)
            if (expected is None or message.offset < expected) and message.partition not in starts:
                starts[message.partition] = message.offset
            next_offset[message.partition] = message.offset + 1
        return starts

    def resync(self, partition: int, intents: list[tuple[int, int]]) -> None:
        """Start a partition afresh at a new position, with the intents recorded beyond it."""
        self._pending[partition] = []
        self._intents[partition] = sorted(intents)
        self._next_offset.pop(partition, None)
        self._waiting_since.pop(partition, None)

    def add(self, messages: list[Message]) -> None:
        """Append messages; call after ``resync`` for every partition ``new_positions`` named."""
        now = time.monotonic()
        for message in messages:
            self._pending[message.partition].append(message)
            self._next_offset[message.partition] = message.offset + 1
            self._waiting_since.setdefault(message.partition, now)

    def pending(self) -> int:
        """Messages waiting to be cut, over all partitions."""
        return sum(len(pending) for pending in self._pending.values())

    def forget(self, partitions: set[int]) -> None:
        """Drop state of revoked partitions: their new owner re-reads them from the last commit."""
        for partition in partitions:
            self._pending.pop(partition, None)
            self._intents.pop(partition, None)
            self._next_offset.pop(partition, None)
            self._waiting_since.pop(partition, None)

    def cut(self) -> list[Batch]:
        """Every batch that can be formed now; replayed intents wait until complete."""
        return self._cut(lambda partition: True)

    def cut_full(self) -> list[Batch]:
        """Replayed batches, and free ones only of partitions holding ``max_messages`` or more."""
        return self._cut(lambda partition: len(self._pending[partition]) >= (self.max_messages or 1))

    def cut_waiting(self, at_least_s: float) -> list[Batch]:
        """Every batch of partitions whose oldest pending message arrived ``at_least_s`` ago."""
        due = time.monotonic() - at_least_s
        return self._cut(lambda partition: self._waiting_since.get(partition, due) <= due)

    def _cut(self, free: Callable[[int], bool]) -> list[Batch]:
        """Batches of every partition: recorded ones when complete, free ones while ``free``
        says so."""
        batches: list[Batch] = []
        for partition, pending in self._pending.items():
            taken = 0
            while pending:
                batch = self._cut_one(partition, pending)
                if batch is None or not (batch.replayed or free(partition)):
                    break
                batches.append(batch)
                del pending[: len(batch.messages)]
                taken += 1
            if not pending:
                self._waiting_since.pop(partition, None)
            elif taken:  # what is left arrived at the latest now
                self._waiting_since[partition] = time.monotonic()
        return batches

    def _cut_one(self, partition: int, pending: list[Message]) -> Batch | None:
        intents = self._intents.get(partition, [])
        first = pending[0].offset
        while intents and intents[0][1] < first:
            intents.pop(0)
        if intents and intents[0][0] <= first:
            intent_first, intent_last = intents[0]
            count = sum(1 for m in pending if m.offset <= intent_last)
            if pending[-1].offset < intent_last:
                return None  # the rest of the recorded batch has not arrived yet
            intents.pop(0)
            return Batch(partition, intent_first, intent_last, pending[:count], replayed=True)
        limit = intents[0][0] if intents else None
        taken = [m for m in pending if limit is None or m.offset < limit][: self.max_messages]
        return Batch(partition, taken[0].offset, taken[-1].offset, taken, replayed=False)
