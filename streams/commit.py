"""The worker owns its commit: the offset committed for a ``spans`` partition is the pipeline's
record of what it stored, never Faust's record of what was acked.

Faust commits the highest contiguous acked offset. Acks are not proof of storage: when an
agent raises out of ``noack_take``, Faust turns acking back on and its stream acks every
later event without processing it. So the pipeline keeps ``StoredOffsets`` — per partition
the next offset it has not stored, advanced only by stored batches that start at or before
it — and the consumer commits exactly that. A gap (messages the pipeline never saw) holds
the commit where it is, so a restart re-reads from the last stored message.
"""

from __future__ import annotations

import logging

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

log = logging.getLogger(__name__)


class StoredOffsets:
    """Per partition of one topic, the next offset the pipeline has not stored."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._next: dict[int, int] = {}

    def start(self, partition: int, offset: int) -> None:
        """The pipeline (re)starts ``partition`` at ``offset``. On a new assignment all before it
        was committed; a later start beyond what was stored is a gap, not progress."""
        current = self._next.get(partition)
        if current is None or offset < current:
            self._next[partition] = offset

    def forget(self, partitions: set[int]) -> None:
        """Revoked partitions: their next owner resumes from the committed offset."""
        for partition in partitions:
            self._next.pop(partition, None)

    def stored(self, partition: int, first_offset: int, last_offset: int) -> None:
        """Offsets ``first_offset..last_offset`` are stored (or dead-lettered) and acked."""
        expected = self._next.get(partition)
        if expected is None:
            return
        if first_offset > expected:
            log.error(
                "partition %d: offsets %d-%d never reached the pipeline; its commit stays at %d "
                "so that a restart reads them again",
                partition,
                expected,
                first_offset - 1,
                expected,
            )
            return
        self._next[partition] = max(expected, last_offset + 1)

    def next_offset(self, partition: int) -> int | None:
        return self._next.get(partition)


class StoredOffsetConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer, committing the pipeline's stored offsets on the spans topic."""

    def _new_offset(self, tp: TP) -> int | None:
        acked_through = super()._new_offset(tp)  # also keeps Faust's ack bookkeeping trimmed
        stored: StoredOffsets | None = getattr(self.app, "spanline_stored_offsets", None)
        if stored is None or tp.topic != stored.topic:
            return acked_through
        return stored.next_offset(tp.partition)

    def committed_offset(self, tp: TP) -> int | None:
        """The offset this consumer last committed for ``tp``, or read as committed when the
        partition was assigned (None: the group never committed it)."""
        return self._committed_offset.get(tp)


class StoredOffsetTransport(aiokafka_driver.Transport):
    Consumer = StoredOffsetConsumer


class SpanlineApp(faust.App):
    """A Faust app whose consumer commits what the ingest pipeline stored (see module doc)."""

    spanline_stored_offsets: StoredOffsets | None = None

    def _new_transport(self) -> StoredOffsetTransport:
        return StoredOffsetTransport(self.conf.broker_consumer, self)
