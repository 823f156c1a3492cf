"""A tracer: one service's span factory, its queue and its background exporter.

The transport is opened lazily on the exporter's thread, so ``configure()`` never connects,
blocks or fails because the receiver or Kafka is slow or down. Tracers flush at interpreter
exit with a short timeout; the exit hook is re-registered after the first delivery because
kafka-python registers its own exit hook that closes its producer, and ``atexit`` runs hooks
last-in first-out.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable
from typing import Unpack

from spanline_sdk.config import ConfigError
from spanline_sdk.exporter import SpanExporter, Transport
from spanline_sdk.fields import SpanFields
from spanline_sdk.finish import SpanFinisher
from spanline_sdk.schema import SCHEMA_VERSION, SpanKind
from spanline_sdk.scope import SpanScope, new_scope

#: Seconds to flush at interpreter exit: long enough for one batch, short enough not to hang exit.
EXIT_FLUSH_TIMEOUT_S = 2.0
#: Longest the exporter waits for one batch to be acknowledged (the receiver answers 503 within 15 s).
SEND_TIMEOUT_S = 35.0

_live: weakref.WeakSet[Tracer] = weakref.WeakSet()


class Tracer:
    """Creates spans for one service and exports them in the background.

    ``tenant_id`` is stamped on every span when given (the receiver overwrites it with the API
    key's tenant; a Kafka transport needs it). ``tenant_salt`` is the tenant's user-id salt:
    with it, user ids are hashed here; without it, they go to the receiver to be hashed there.
    """

    def __init__(
        self,
        *,
        service: str,
        open_transport: Callable[[], Transport],
        close_transport: Callable[[Transport, float], None] | None = None,
        tenant_id: str | None = None,
        tenant_salt: bytes | None = None,
        environment: str = "production",
        feature: str = "",
        queue_size: int = 100_000,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        send_timeout_s: float = SEND_TIMEOUT_S,
        capture_content: bool = False,
    ) -> None:
        if queue_size < 1 or batch_size < 1 or flush_interval_s <= 0:
            raise ConfigError(
                f"queue_size and batch_size must be >= 1 and flush_interval_s > 0 "
                f"(got {queue_size}, {batch_size}, {flush_interval_s})"
            )
        base = {"schema_version": SCHEMA_VERSION, "service": service, "environment": environment, "feature": feature}
        if tenant_id is not None:
            base["tenant_id"] = tenant_id
        self._exporter = SpanExporter(
            open_transport,
            SpanFinisher(base, tenant_salt, capture_content),
            queue_size=queue_size,
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
            send_timeout_s=send_timeout_s,
            on_first_delivery=_move_exit_hook_last,
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


def _flush_at_exit() -> None:
    for tracer in list(_live):
        tracer.shutdown(EXIT_FLUSH_TIMEOUT_S)


def _move_exit_hook_last() -> None:
    """Re-register the exit hook so it runs before hooks registered since (the producer's)."""
    atexit.unregister(_flush_at_exit)
    atexit.register(_flush_at_exit)


atexit.register(_flush_at_exit)
