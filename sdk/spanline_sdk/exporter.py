"""The bounded span queue and the one background thread that batches and sends it.

Callers only append to a deque after a length check (``put``): no lock, no I/O, no waiting.
When the queue is full the span is dropped and counted. The thread takes up to
``batch_size`` spans whenever that many are queued or ``flush_interval_s`` passed,
completes them and hands them to the transport, which returns once they are acknowledged. A
failed send is retried with jittered exponential back-off (honouring a server's Retry-After)
while callers keep filling the (bounded) queue, so an outage costs dropped spans, never a
blocked or failing caller.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from spanline_sdk.backoff import jittered_delay
from spanline_sdk.encode import Rejected

log = logging.getLogger("spanline.sdk")

_live: weakref.WeakSet[SpanExporter] = weakref.WeakSet()


class Transport(Protocol):
    """Where the exporter sends batches: the receiver over HTTP, Kafka, or anything shaped like them.

    ``send`` returns once the spans are acknowledged, listing the ones refused for their
    content; it raises :class:`Undeliverable` for a batch no retry can deliver, and any other
    exception for a failure worth retrying (an attribute ``retry_after_s`` is the least wait).
    """

    def send(self, spans: list[dict[str, Any]], timeout_s: float) -> Sequence[Rejected]: ...


class Undeliverable(Exception):
    """A batch no retry can deliver (e.g. the receiver refused the API key): dropped and counted."""


Finisher = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


class SpanExporter:
    """Bounded queue + one daemon thread. Counters: see :meth:`stats`."""

    def __init__(
        self,
        open_transport: Callable[[], Transport],
        finish: Finisher,
        *,
        queue_size: int,
        batch_size: int,
        flush_interval_s: float,
        send_timeout_s: float,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        on_first_delivery: Callable[[], None] | None = None,
        close_transport: Callable[[Transport, float], None] | None = None,
    ) -> None:
        self._open_transport = open_transport
        self._finish = finish
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._send_timeout_s = send_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._on_first_delivery = on_first_delivery
        self._close_transport = close_transport
        self._closed = False
        self._start()
        _live.add(self)

    def _start(self) -> None:
        """Fresh queue, locks, counters and worker thread (at creation and in a forked child)."""
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()
        self._interrupt = threading.Event()
        self._settled = threading.Condition()
        self._drop_lock = threading.Lock()
        self._transport: Transport | None = None
        self._delivered_once = False
        self._deadline = float("inf")
        self._in_flight = 0
        self._given_up = False
        self._failing = False
        self._refused = False
        # `_dropped` is written by callers under _drop_lock; the rest by the worker under _settled.
        self._dropped = 0
        self._taken = 0
        self._sent = 0
        self._invalid = 0
        self._abandoned = 0
        self._cleared = 0
        self._send_failures = 0
        self._thread = threading.Thread(target=self._run, name="spanline-sdk-exporter", daemon=True)
        self._thread.start()

    def _restart_after_fork(self) -> None:
        """A forked child has no worker thread and must not share the parent's connection.

        Spans the parent had queued stay the parent's job; the child starts empty, with its
        own counters, and opens its own transport on first send.
        """
        if not self._closed:
            self._start()

    # --- caller side
    def put(self, span: dict[str, Any]) -> None:
        """Queue one ended span; drop and count it when the queue is full or closed. Never blocks."""
        queue = self._queue
        size = len(queue)
        if size >= self._queue_size or self._closed:
            with self._drop_lock:
                self._dropped += 1
            return
        queue.append(span)
        if size + 1 == self._batch_size:
            self._wake.set()

    def stats(self) -> dict[str, int]:
        """Counters since start.

        enqueued: accepted into the queue; sent: acknowledged by the transport; dropped: refused
        by a full or closed queue, undeliverable, or given up on at shutdown; send_failures:
        failed send attempts (each retried); invalid: refused for their content (by the
        receiver, or not encodable); queued: waiting now.
        """
        with self._settled:
            queued = len(self._queue)
            return {
                "enqueued": self._taken + queued + self._cleared,
                "sent": self._sent,
                "dropped": self._dropped + self._abandoned + self._cleared,
                "send_failures": self._send_failures,
                "invalid": self._invalid,
                "queued": queued,
            }

    def flush(self, timeout_s: float) -> bool:
        """Wait until every span queued before this call is sent, invalid or given up on."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        with self._settled:
            target = self._taken + len(self._queue)
            while self._sent + self._invalid + self._abandoned < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._settled.wait(min(remaining, 0.05))
        return True

    def shutdown(self, timeout_s: float) -> None:
        """Send what is queued (for up to ``timeout_s``), stop the thread, count the rest as dropped."""
        if self._closed:
            return
        self._closed = True
        self._deadline = time.monotonic() + timeout_s
        self._wake.set()
        self._interrupt.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():  # stuck inside the transport: stop waiting for it
            with self._settled:
                self._given_up = True
                self._abandoned += self._in_flight
                self._in_flight = 0
                self._cleared += len(self._queue)
                self._queue.clear()

    # --- worker side
    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_interval_s)
            self._wake.clear()
            while self._queue and not self._given_up:
                self._process(self._take_batch())
            if self._closed:
                break
        self._close()

    def _take_batch(self) -> list[dict[str, Any]]:
        queue = self._queue
        with self._settled:  # so stats() and flush() never see a span in neither place
            batch = [queue.popleft() for _ in range(min(len(queue), self._batch_size))]
            self._taken += len(batch)
            self._in_flight = len(batch)
        return batch

    def _process(self, batch: list[dict[str, Any]]) -> None:
        try:
            spans = self._finish(batch)
        except Exception:
            log.exception("spanline SDK could not complete %d spans; dropping them as invalid", len(batch))
            self._settle(sent=0, invalid=len(batch), abandoned=0)
            return
        rejected = self._deliver(spans)
        if rejected is None:
            self._settle(sent=0, invalid=0, abandoned=len(spans))
            return
        if rejected:
            log.warning("spanline SDK: %d span(s) refused, e.g. %s", len(rejected), rejected[0].reason)
        self._settle(sent=len(spans) - len(rejected), invalid=len(rejected), abandoned=0)

    def _settle(self, *, sent: int, invalid: int, abandoned: int) -> None:
        with self._settled:
            if self._given_up:
                return
            self._sent += sent
            self._invalid += invalid
            self._abandoned += abandoned
            self._in_flight = 0
            self._settled.notify_all()

    def _deliver(self, spans: list[dict[str, Any]]) -> Sequence[Rejected] | None:
        """Send until acknowledged, backing off between tries: the refused spans, or None when
        the batch is undeliverable or the shutdown deadline passed."""
        attempt = 0
        while True:
            try:
                rejected = self._send(spans)
            except Undeliverable as exc:
                # one error per streak of refusals (a wrong key refuses every batch)
                log.log(
                    logging.DEBUG if self._refused else logging.ERROR,
                    "spanline SDK dropped %d spans: %s",
                    len(spans),
                    exc,
                )
                self._refused = True
                return None
            except Exception as exc:
                attempt += 1
                self._send_failures += 1
                delay = jittered_delay(
                    attempt, self._backoff_initial_s, self._backoff_max_s, getattr(exc, "retry_after_s", None)
                )
                # one warning per outage, not one per try: the host application's log is not ours
                log.log(
                    logging.DEBUG if self._failing else logging.WARNING,
                    "spanline SDK cannot send spans (%s: %s); retry %d in %.1fs",
                    type(exc).__name__,
                    exc,
                    attempt,
                    delay,
                )
                self._failing = True
                if self._past_deadline():
                    return None
                self._pause(delay)
                if self._past_deadline():
                    return None
                continue
            if self._failing or self._refused:
                log.warning("spanline SDK is sending spans again")
                self._failing = self._refused = False
            return rejected

    def _send(self, spans: list[dict[str, Any]]) -> Sequence[Rejected]:
        if self._transport is None:
            self._transport = self._open_transport()
        timeout_s = min(self._send_timeout_s, max(self._deadline - time.monotonic(), 0.0))
        rejected = self._transport.send(spans, timeout_s)
        if not self._delivered_once:
            self._delivered_once = True
            if self._on_first_delivery is not None:
                self._on_first_delivery()
        return rejected

    def _past_deadline(self) -> bool:
        return time.monotonic() >= self._deadline

    def _pause(self, seconds: float) -> None:
        """Wait between tries: shutdown cuts the wait short, and none lasts past its deadline."""
        remaining = max(self._deadline - time.monotonic(), 0.0)
        if self._closed:  # shutting down: keep pausing between tries until the deadline
            time.sleep(min(seconds, remaining))
        else:
            self._interrupt.wait(min(seconds, remaining))

    def _close(self) -> None:
        if self._transport is None or self._close_transport is None:
            return
        try:
            self._close_transport(self._transport, max(self._deadline - time.monotonic(), 0.0))
        except Exception:
            log.warning("spanline SDK could not close its transport cleanly", exc_info=True)


def _restart_all_after_fork() -> None:
    for exporter in list(_live):
        exporter._restart_after_fork()


os.register_at_fork(after_in_child=_restart_all_after_fork)
