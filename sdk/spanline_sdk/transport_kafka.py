"""Spans straight to Kafka, for producers inside the cluster (extra ``spanline-sdk[kafka]``).

A Kafka message carries a JSON array of up to ``spans_per_message`` spans, so the per-message
cost of Kafka and the worker is paid once per batch. All spans of one trace land on the
partition their ``trace_id`` hashes to (the message key is a trace id of that partition),
which keeps a trace on one worker. The server's receiver publishes through the same
:class:`SpanProducer`; spans sent this way skip the receiver, so the SDK stamps the tenant and
hashes user ids with the tenant's salt itself, and the worker dead-letters invalid ones.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from spanline_sdk.encode import Rejected, encodable, encode

#: Kafka header naming how a message entered Spanline (``sdk``, ``http``, ``otlp``).
SOURCE_HEADER = "spanline-source"
#: This exporter's value of that header.
SOURCE = "sdk"

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
#: The SDK's changes: give up bootstrapping after 10 s (the exporter then retries with back-off),
#: fail a delivery within 30 s and block at most 10 s for metadata, so a send is always decided
#: before the exporter's own timeout (spanline_sdk.tracer.SEND_TIMEOUT_S).
SDK_PRODUCER_OVERRIDES: dict[str, Any] = {
    "bootstrap_timeout_ms": 10_000,
    "request_timeout_ms": 10_000,
    "delivery_timeout_ms": 30_000,
    "max_block_ms": 10_000,
}

#: (partition, key, value) of one message.
Message = tuple[int, bytes, bytes]


def partition_for(trace_id: str, partitions: int) -> int:
    """Kafka's default (murmur2) partition of a key, so keyed and batched sends agree."""
    hashed: int = murmur2(trace_id.encode())  # kafka-python is untyped
    return (hashed & 0x7FFFFFFF) % partitions


class SpanProducer:
    """Groups spans by partition, packs them into batch messages and sends them with acks=all."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        spans_per_message: int = 500,
        client_id: str = "spanline-sdk",
        encoder: Callable[[Sequence[Mapping[str, Any]]], bytes] = encode,
        **producer_overrides: Any,
    ) -> None:
        self.topic = topic
        self.spans_per_message = spans_per_message
        self._encode = encoder
        config = {**PRODUCER_DEFAULTS, **producer_overrides}
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers.split(","), client_id=client_id, **config)
        self._partitions = len(self._producer.partitions_for(topic) or ()) or 1

    def messages(self, spans: Sequence[Mapping[str, Any]]) -> list[Message]:
        """Every message for ``spans``, encoded before any is sent (an encoding error sends nothing)."""
        return [
            (partition, str(chunk[0]["trace_id"]).encode(), self._encode(chunk))
            for partition, chunk in self._chunks(spans)
        ]

    def produce(self, messages: Iterable[Message], source: str, topic: str | None = None) -> list[Any]:
        """Queue prepared messages for sending; returns kafka-python futures, one per message."""
        headers = [(SOURCE_HEADER, source.encode())]
        return [
            self._producer.send(topic or self.topic, value=value, key=key, partition=partition, headers=headers)
            for partition, key, value in messages
        ]

    def send(self, spans: Sequence[Mapping[str, Any]], source: str, topic: str | None = None) -> list[Any]:
        """Queue the spans for sending; returns kafka-python futures, one per message."""
        return self.produce(self.messages(spans), source, topic)

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


class KafkaTransport:
    """The exporter's transport to Kafka: one producer, created on the exporter's thread."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._producer = SpanProducer(bootstrap_servers, topic, **SDK_PRODUCER_OVERRIDES)

    def send(self, spans: list[dict[str, Any]], timeout_s: float) -> list[Rejected]:
        deadline = time.monotonic() + timeout_s
        rejected: list[Rejected] = []
        try:
            messages = self._producer.messages(spans)
        except (TypeError, ValueError):
            kept, rejected = encodable(spans)
            messages = self._producer.messages([spans[i] for i in kept])
        for future in self._producer.produce(messages, SOURCE):
            future.get(timeout=max(deadline - time.monotonic(), 0.0))
        return rejected

    def close(self, timeout_s: float) -> None:
        self._producer.close(timeout_s)
