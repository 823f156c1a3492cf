"""Publishing span batches to Kafka, shared by the HTTP receiver and the SDK.

A Kafka message carries a JSON array of up to ``spans_per_message`` spans (docs/requirements.md §3), so the
per-message cost of Kafka and Faust is paid once per batch rather than once per span. All
spans of one trace land on the partition their ``trace_id`` hashes to (the message key is a
trace id of that partition), which keeps a trace's spans in order on one worker.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

SOURCE_HEADER = "spanline-source"

#: Producer defaults measured in docs/architecture.md: lz4 + 20 ms linger + 256 KB batches.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "compression_type": "lz4",
    "linger_ms": 20,
    "batch_size": 256 * 1024,
    "max_request_size": 16 * 1024 * 1024,
    "retries": 2_147_483_647,
    "retry_backoff_ms": 100,
    "request_timeout_ms": 30_000,
    "delivery_timeout_ms": 120_000,
}


def encode_spans(spans: Sequence[Mapping[str, Any]]) -> bytes:
    """One Kafka message value: a JSON array of span objects."""
    return orjson.dumps(list(spans), option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z)


def partition_for(trace_id: str, partitions: int) -> int:
    """Kafka's default (murmur2) partition of a key, so keyed and batched sends agree."""
    hashed: int = murmur2(trace_id.encode())  # kafka-python is untyped
    return (hashed & 0x7FFFFFFF) % partitions


class SpanPublisher:
    """Groups spans by partition, packs them into batch messages and sends them with acks=all."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        spans_per_message: int = 500,
        client_id: str = "spanline-collector",
        **producer_overrides: Any,
    ) -> None:
        self.topic = topic
        self.spans_per_message = spans_per_message
        config = {**PRODUCER_DEFAULTS, **producer_overrides}
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers.split(","), client_id=client_id, **config)
        self._partitions = len(self._producer.partitions_for(topic) or ()) or 1

    def send(self, spans: Sequence[Mapping[str, Any]], source: str, topic: str | None = None) -> list[Any]:
        """Queue the spans for sending; returns kafka-python futures, one per message."""
        headers = [(SOURCE_HEADER, source.encode())]
        futures = []
        for partition, chunk in self._chunks(spans):
            futures.append(
                self._producer.send(
                    topic or self.topic,
                    value=encode_spans(chunk),
                    key=str(chunk[0]["trace_id"]).encode(),
                    partition=partition,
                    headers=headers,
                )
            )
        return futures

    def send_records(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> list[Any]:
        """Send prepared (key, value) records, e.g. dead letters."""
        return [self._producer.send(topic, key=key, value=value) for key, value in records]

    async def send_and_wait(self, spans: Sequence[Mapping[str, Any]], source: str) -> None:
        """Send and return once Kafka acknowledged every message (raises the first failure)."""
        await wait_acked(self.send(spans, source))

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.close(timeout=timeout_s)

    def _chunks(self, spans: Sequence[Mapping[str, Any]]) -> Iterable[tuple[int, list[Mapping[str, Any]]]]:
        by_partition: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
        partition_of: dict[str, int] = {}
        for span in spans:
            trace_id = str(span["trace_id"])
            partition = partition_of.get(trace_id)
            if partition is None:
                partition = partition_of[trace_id] = partition_for(trace_id, self._partitions)
            by_partition[partition].append(span)
        size = self.spans_per_message
        for partition, group in by_partition.items():
            for start in range(0, len(group), size):
                yield partition, group[start : start + size]


async def wait_acked(futures: Sequence[Any]) -> None:
    """Await kafka-python futures from asyncio without blocking the event loop."""
    loop = asyncio.get_running_loop()
    waiters = []
    for future in futures:
        waiter: asyncio.Future[Any] = loop.create_future()
        future.add_callback(_resolver(loop, waiter))
        future.add_errback(_rejecter(loop, waiter))
        waiters.append(waiter)
    await asyncio.gather(*waiters)


def _resolver(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[Any]) -> Any:
    return lambda value: loop.call_soon_threadsafe(_settle, waiter, value, None)


def _rejecter(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[Any]) -> Any:
    return lambda exc: loop.call_soon_threadsafe(_settle, waiter, None, exc)


def _settle(waiter: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    if waiter.done():
        return
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(value)
