"""The bounded span queue and the one background thread that batches and sends it.

Callers only append to a deque after a length check (``put``): no lock, no I/O, no waiting.
When the queue is full the span is dropped and counted. The thread takes up to
``batch_size`` spans whenever that many are queued or ``flush_interval_s`` passed,
completes and validates them, hands them to the transport and waits for the acks. A failed
send is retried with the jittered back-off of spanline/retrying.py while callers keep filling
the (bounded) queue, so a Kafka outage costs dropped spans, never a blocked or failing caller.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from spanline.contract.validation import FieldError, InvalidItem
from spanline.retrying import Retry, any_error

log = logging.getLogger("spanline.sdk")

_live: weakref.WeakSet[SpanExporter] = weakref.WeakSet()


class Transport(Protocol):
    """What the exporter sends to: SpanPublisher, or anything shaped like it."""

    def send(self, spans: list[dict[str, Any]], source: str) -> list[Any]: ...


Finisher = Callable[[list[dict[str, Any]]], tuple[list[dict[str, Any]], list[InvalidItem]]]


def wait_for_ack(future: Any, timeout_s: float) -> None:
    """Block until a kafka-python or concurrent.futures future resolves; raise its failure."""
    getter = getattr(future, "get", None) or future.result
    getter(timeout=timeout_s)


class SpanExporter:
    """Bounded queue + one daemon thread. Counters: see :meth:`stats`."""

    def __init__(
        self,
        open_transport: Callable[[], Transport],
        finish: Finisher,
        *,
        source: str,
        queue_size: int,
        batch_size: int,
        flush_interval_s: float,
        ack_timeout_s: float,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        on_transport_open: Callable[[], None] | None = None,
        close_transport: Callable[[Transport, float], None] | None = None,
    ) -> None:
        self._open_transport = open_transport
        self._finish = finish
        self._source = source
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._ack_timeout_s = ack_timeout_s
        #: Every send failure is retried until the shutdown deadline; only the first retry of a
        #: send is a warning, so an outage is one line in the host app's log.
        self._retry = Retry(
            any_error,
            backoff_initial_s,
            backoff_max_s,
            give_up=self._past_deadline,
            sleep=self._pause,
            logger=log,
            repeat_level=logging.DEBUG,
        )
        self._on_transport_open = on_transport_open
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
        self._deadline = float("inf")
        self._in_flight = 0
        self._given_up = False
        self._failing = False
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
        by a full or closed queue, or given up on at shutdown; send_failures: failed send
        attempts (each retried); invalid: rejected by schema validation; queued: waiting now.
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
            spans, invalid = self._finish(batch)
        except Exception as exc:
            log.exception("spanline SDK could not complete %d spans; dropping them as invalid", len(batch))
            problem = (FieldError("", f"could not be completed: {type(exc).__name__}: {exc}"),)
            spans, invalid = [], [InvalidItem(i, span, problem) for i, span in enumerate(batch)]
        if invalid:
            log.warning("spanline SDK dropped %d invalid span(s), e.g. %s", len(invalid), invalid[0].reason)
        delivered = self._deliver(spans) if spans else True
        with self._settled:
            if self._given_up:
                return
            self._invalid += len(invalid)
            if delivered:
                self._sent += len(spans)
            else:
                self._abandoned += len(spans)
            self._in_flight = 0
            self._settled.notify_all()

    def _deliver(self, spans: list[dict[str, Any]]) -> bool:
        """Send until acked, backing off between tries; False once the shutdown deadline passed."""
        try:
            self._retry.run_sync(lambda: self._send_counted(spans), "spanline SDK: Kafka")
        except Exception:
            return False
        return True

    def _send_counted(self, spans: list[dict[str, Any]]) -> None:
        """One try, counted; says so once sending works again after failures."""
        try:
            self._send_and_wait(spans)
        except Exception:
            self._send_failures += 1
            self._failing = True
            raise
        if self._failing:
            log.warning("spanline SDK is sending spans again")
            self._failing = False

    def _past_deadline(self) -> bool:
        return time.monotonic() >= self._deadline

    def _pause(self, seconds: float) -> None:
        """Wait between tries: shutdown cuts the wait short, and none lasts past its deadline."""
        remaining = max(self._deadline - time.monotonic(), 0.0)
        if self._closed:  # shutting down: keep pausing between tries until the deadline
            time.sleep(min(seconds, remaining))
        else:
            self._interrupt.wait(min(seconds, remaining))

    def _send_and_wait(self, spans: list[dict[str, Any]]) -> None:
        if self._transport is None:
            self._transport = self._open_transport()
            if self._on_transport_open is not None:
                self._on_transport_open()
        futures = self._transport.send(spans, self._source)
        deadline = min(time.monotonic() + self._ack_timeout_s, self._deadline)
        for future in futures:
            wait_for_ack(future, max(deadline - time.monotonic(), 0.0))

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
