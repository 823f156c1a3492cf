"""Stopping `spanline up` without losing accepted spans.

A span the receiver answered 200 for is in Kafka, but until the worker stores it, the embedded
broker (tansu, memory storage) is its only copy, and it dies with `up`. So the first SIGINT or
SIGTERM closes the receiver, then waits until the worker's consumer group has committed the
``spans`` topic's end (the worker commits only stored messages), and only then lets Faust stop
the worker; the broker stops after that. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

log = logging.getLogger(__name__)

#: How often the committed offsets are read, and how often the remainder is logged, seconds.
POLL_S = 0.2
PROGRESS_S = 1.0
#: Longest a read of the partitions' last record batches may take, seconds.
TAIL_READ_S = 5.0


def end_offsets(bootstrap_servers: str, topic: str) -> dict[TopicPartition, int]:
    """One past each partition's last message, read from the partition's tail.

    tansu lists a partition's end as its last record batch's base offset + 1, so the listed end
    can be a whole producer batch short; fetching from that offset returns the whole batch.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers.split(","),
        enable_auto_commit=False,
        max_poll_records=100_000,
        client_id="spanline-drain",
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends: dict[TopicPartition, int] = consumer.end_offsets(partitions)
        unread = {tp for tp in partitions if ends[tp] > 0}
        consumer.assign(list(unread))
        for tp in unread:
            consumer.seek(tp, ends[tp] - 1)
        deadline = time.monotonic() + TAIL_READ_S
        while unread and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                ends[tp] = max(ends[tp], records[-1].offset + 1)
                unread.discard(tp)
        if unread:
            log.warning("could not read the tail of %s; waiting for their listed end only", sorted(unread))
        return ends
    finally:
        consumer.close()


def unstored(admin: KafkaAdminClient, group: str, ends: dict[TopicPartition, int]) -> int:
    """Messages below ``ends`` the group has not committed (-1 = nothing committed yet)."""
    committed = admin.list_group_offsets({group: list(ends)})[group]
    return sum(max(0, end - max(0, committed[tp].offset if tp in committed else 0)) for tp, end in ends.items())


class Drain:
    """Stop accepting, then wait (bounded) until the worker group has stored what was accepted."""

    def __init__(
        self,
        close_receiver: Callable[[], Awaitable[None]],
        bootstrap_servers: str,
        topic: str,
        group: str,
        timeout_s: float,
        unstored_fate: str,
    ) -> None:
        self._close_receiver = close_receiver
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._group = group
        self._timeout_s = timeout_s
        self._unstored_fate = unstored_fate
        self._unstored: int | None = None  # the latest count, for the warning of a cut-short drain

    async def run(self, signame: str) -> None:
        started = time.monotonic()
        log.info(
            "%s: stopping; no longer accepting spans, storing the accepted ones first (at most %g s; "
            "signal again to stop at once)",
            signame,
            self._timeout_s,
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._close_receiver()
                await self._wait_stored()
        except TimeoutError:
            log.warning(
                "drain: SPANLINE_DRAIN_TIMEOUT_S (%g s) passed; stopping with %s", self._timeout_s, self._what_is_lost()
            )
        except KafkaError as exc:
            log.warning("drain: cannot read offsets from Kafka (%s); stopping with %s", exc, self._what_is_lost())
        else:
            log.info("drained: every accepted span is stored (%.1f s); stopping the worker", time.monotonic() - started)

    def abandon(self, signame: str) -> None:
        """Called on a second signal: the drain is cancelled, so say what that costs."""
        log.warning("%s again: stopping at once with %s", signame, self._what_is_lost())

    def _what_is_lost(self) -> str:
        count = "an unknown number of" if self._unstored is None else str(self._unstored)
        return f"{count} accepted Kafka message(s) of spans not stored yet; they are {self._unstored_fate}"

    async def _wait_stored(self) -> None:
        ends = await asyncio.to_thread(end_offsets, self._bootstrap_servers, self._topic)
        admin = await asyncio.to_thread(
            KafkaAdminClient, bootstrap_servers=self._bootstrap_servers.split(","), client_id="spanline-drain"
        )
        try:
            logged = 0.0
            while True:
                self._unstored = await asyncio.to_thread(unstored, admin, self._group, ends)
                if not self._unstored:
                    return
                if time.monotonic() - logged >= PROGRESS_S:
                    log.info("draining: %d accepted message(s) of %s not stored yet", self._unstored, self._topic)
                    logged = time.monotonic()
                await asyncio.sleep(POLL_S)
        finally:
            admin.close()


class DrainingWorker(faust.Worker):
    """A Faust worker whose first SIGINT/SIGTERM runs the drain before Faust's own stop."""

    def __init__(self, app: faust.App, drain: Drain, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._drain = drain
        self._draining: asyncio.Task[None] | None = None

    def _on_sigint(self) -> None:
        self._on_stop_signal(signal.SIGINT, super()._on_sigint)

    def _on_sigterm(self) -> None:
        self._on_stop_signal(signal.SIGTERM, super()._on_sigterm)

    def _on_stop_signal(self, signum: signal.Signals, stop: Callable[[], None]) -> None:
        if self._draining is None:
            self._draining = self.loop.create_task(self._drain_then(signum, stop))
        elif not self._draining.done():
            self._drain.abandon(signum.name)
            self._draining.cancel()  # its finally runs Faust's stop
        else:
            stop()

    async def _drain_then(self, signum: signal.Signals, stop: Callable[[], None]) -> None:
        try:
            await self._drain.run(signum.name)
        finally:
            stop()
