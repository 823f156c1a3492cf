"""A tracer: one tenant/service's span factory, its queue and its background exporter.

The Kafka producer is created lazily on the exporter's thread, so ``configure()`` never
connects, blocks or fails because Kafka is slow or down. Tracers flush at interpreter exit
with a short timeout; the exit hook is re-registered after the producer is created because
kafka-python registers its own exit hook that closes the producer, and ``atexit`` runs
hooks last-in first-out.
"""

from __future__ import annotations

import atexit
import logging
import secrets
import weakref
from collections.abc import Callable
from typing import Any, Unpack

from spanline.collectors.sdk.exporter import SpanExporter, Transport
from spanline.collectors.sdk.fields import SpanFields
from spanline.collectors.sdk.finish import SpanFinisher
from spanline.collectors.sdk.scope import SpanScope, new_scope
from spanline.contract.hashing import stored_master_secret, tenant_salt
from spanline.contract.schema import SCHEMA_VERSION, SpanKind
from spanline.errors import ConfigError
from spanline.kafka.publish import SpanPublisher
from spanline.settings import load_settings

log = logging.getLogger("spanline.sdk")

#: Source header value on the Kafka messages the SDK publishes.
SOURCE = "sdk"
#: Seconds to flush at interpreter exit: long enough for one batch, short enough not to hang exit.
EXIT_FLUSH_TIMEOUT_S = 2.0
#: Producer settings for the SDK: give up bootstrapping after 10 s (then retry with
#: back-off), fail a delivery within 30 s and block at most 10 s for metadata, so an ack
#: is always decided before the exporter's own ack timeout.
SDK_PRODUCER_OVERRIDES: dict[str, Any] = {
    "bootstrap_timeout_ms": 10_000,
    "request_timeout_ms": 10_000,
    "delivery_timeout_ms": 30_000,
    "max_block_ms": 10_000,
}
ACK_TIMEOUT_S = 35.0

_live: weakref.WeakSet[Tracer] = weakref.WeakSet()


def master_secret(explicit: bytes | str | None) -> bytes:
    """The user-id master secret: the argument, SPANLINE_USER_ID_SALT, <home>/salt, or a random one.

    The fallback to a per-process random secret keeps the SDK working, but then hashes of the
    same user differ between processes, so it is logged as a warning.
    """
    if explicit is not None:
        return explicit.encode() if isinstance(explicit, str) else explicit
    settings = load_settings()
    stored = stored_master_secret(settings, create=False)
    if stored is not None:
        return stored
    log.warning(
        "spanline SDK: no user_id_salt, SPANLINE_USER_ID_SALT or %s; user-id hashes are only stable "
        "within this process",
        settings.home / "salt",
    )
    return secrets.token_bytes(32)


class Tracer:
    """Creates spans for one tenant and service and exports them in the background."""

    def __init__(
        self,
        *,
        tenant_id: str,
        service: str,
        open_transport: Callable[[], Transport],
        close_transport: Callable[[Transport, float], None] | None = None,
        environment: str = "production",
        feature: str = "",
        user_id_salt: bytes | str | None = None,
        queue_size: int = 100_000,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        capture_content: bool = False,
    ) -> None:
        if queue_size < 1 or batch_size < 1 or flush_interval_s <= 0:
            raise ConfigError(
                f"queue_size and batch_size must be >= 1 and flush_interval_s > 0 "
                f"(got {queue_size}, {batch_size}, {flush_interval_s})"
            )
        base = {
            "schema_version": SCHEMA_VERSION,
            "tenant_id": tenant_id,
            "service": service,
            "environment": environment,
            "feature": feature,
        }
        salt = tenant_salt(master_secret(user_id_salt), tenant_id)
        self._exporter = SpanExporter(
            open_transport,
            SpanFinisher(base, salt, capture_content),
            source=SOURCE,
            queue_size=queue_size,
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
            ack_timeout_s=ACK_TIMEOUT_S,
            on_transport_open=_move_exit_hook_last,
            close_transport=close_transport,
        )
        #: The sink interface spans call when they end: straight into the queue.
        self.emit = self._exporter.put
        _live.add(self)

    def span(self, kind: SpanKind | str, **fields: Unpack[SpanFields]) -> SpanScope:
        """A span of any kind reported to this tracer (the module helpers use the default one)."""
        return new_scope(self, SpanKind(kind).value, fields)

    def stats(self) -> dict[str, int]:
        """Counters: enqueued, sent, dropped, send_failures, invalid, queued."""
        return self._exporter.stats()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until the spans ended so far are sent (True) or the timeout passed (False)."""
        return self._exporter.flush(timeout_s)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Flush for up to ``timeout_s`` and stop; later spans are dropped and counted."""
        self._exporter.shutdown(timeout_s)
        _live.discard(self)


def kafka_transport(
    bootstrap_servers: str, topic: str
) -> tuple[Callable[[], Transport], Callable[[Transport, float], None]]:
    """(open, close) for a SpanPublisher; the exporter calls both on its own thread."""

    def open_publisher() -> Transport:
        return SpanPublisher(bootstrap_servers, topic, client_id="spanline-sdk", **SDK_PRODUCER_OVERRIDES)

    def close_publisher(transport: Transport, timeout_s: float) -> None:
        if isinstance(transport, SpanPublisher):
            transport.close(timeout_s=timeout_s)

    return open_publisher, close_publisher


def _flush_at_exit() -> None:
    for tracer in list(_live):
        tracer.shutdown(EXIT_FLUSH_TIMEOUT_S)


def _move_exit_hook_last() -> None:
    """Re-register the exit hook so it runs before hooks registered since (the producer's)."""
    atexit.unregister(_flush_at_exit)
    atexit.register(_flush_at_exit)


atexit.register(_flush_at_exit)
