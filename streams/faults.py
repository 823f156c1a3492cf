"""The one place that decides how a step failed: transient or caused by the data.

Transient: ClickHouse, the broker or the network could not do it now (RetryableStorageError,
a retriable Kafka error, a connection or timeout error). The work is retried with back-off,
never skipped and never acked. Anything else is a data fault: the content of some message
made a step fail (decode, validate, derive, price, frame, Arrow conversion, insert, window
aggregation, dead-letter encoding), including exceptions nobody foresaw. The pipeline then
isolates the smallest unit that reproduces it (streams/isolate.py) and dead-letters that unit
with the exception as its reason; everything else is stored.
"""

from __future__ import annotations

import aiokafka.errors
import kafka.errors

from spanline.errors import RetryableStorageError

_KAFKA_ERRORS = (aiokafka.errors.KafkaError, kafka.errors.KafkaError)
#: Timeouts waiting for the broker: aiokafka does not mark its own as retriable.
_KAFKA_TIMEOUTS = (aiokafka.errors.KafkaTimeoutError, kafka.errors.KafkaTimeoutError)


def is_transient(exc: BaseException) -> bool:
    """True when the same work may succeed later, so it must be retried rather than isolated."""
    if isinstance(exc, (RetryableStorageError, ConnectionError, TimeoutError, *_KAFKA_TIMEOUTS)):
        return True
    return isinstance(exc, _KAFKA_ERRORS) and bool(getattr(exc, "retriable", False))


def describe(exc: BaseException) -> str:
    """An exception as a dead letter's reason: its type and its first line, bounded."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:500]}" if text else type(exc).__name__
