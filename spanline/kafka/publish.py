"""Publishing span batches to Kafka from the server: the receiver and the worker's re-sends.

The batching, partitioning and producer settings are the SDK's (:class:`SpanProducer`, the one
implementation for every writer of the ``spans`` topic); the server encodes with orjson, the
fastest encoder measured here, and awaits acks from asyncio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from spanline_sdk.transport_kafka import SOURCE_HEADER, SpanProducer, partition_for

__all__ = ["SOURCE_HEADER", "SpanPublisher", "encode_spans", "partition_for", "wait_acked"]


def encode_spans(spans: Sequence[Mapping[str, Any]]) -> bytes:
    """One Kafka message value: a JSON array of span objects."""
    return orjson.dumps(list(spans), option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z)


class SpanPublisher(SpanProducer):
    """The SDK's span producer with orjson encoding, dead-letter records and asyncio acks."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        spans_per_message: int = 500,
        client_id: str = "spanline-collector",
        **producer_overrides: Any,
    ) -> None:
        super().__init__(bootstrap_servers, topic, spans_per_message, client_id, encode_spans, **producer_overrides)

    def send_records(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> list[Any]:
        """Send prepared (key, value) records, e.g. dead letters."""
        return [self._producer.send(topic, key=key, value=value) for key, value in records]

    async def send_and_wait(self, spans: Sequence[Mapping[str, Any]], source: str) -> None:
        """Send and return once Kafka acknowledged every message (raises the first failure)."""
        await wait_acked(self.send(spans, source))


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
