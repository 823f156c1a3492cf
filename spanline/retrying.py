"""The one retry policy: jittered exponential back-off between tries and one log line per retry.

Every loop of the server that waits for something to come back runs through :class:`Retry`: the worker
(ClickHouse and Kafka, streams/retry.py), the simulator's sender
(the receiver) and the alert notifiers (PagerDuty, Slack, webhooks). Whether a failure may be
retried stays with the caller's own classifier (streams/faults.py for the worker, whose
ClickHouse errors sql/classify.py sorts; HTTP statuses for the simulator and the notifiers):
the policy takes it as a predicate. The back-off itself is ``spanline_sdk.backoff``, which
the SDK's exporter shares. Every retry is logged as
``<what> unavailable (<reason>); retry N in X.Xs``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import tenacity

from spanline_sdk.backoff import jittered_delay

if TYPE_CHECKING:
    from spanline.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Knobs of loops without settings of their own; the worker's come from spanline/settings.py.
DEFAULT_INITIAL_S = 0.5
DEFAULT_MAX_S = 30.0
#: Longest reason in a retry line: one line of the failure, not a dump of its payload.
_REASON_MAX_CHARS = 300


def any_error(exc: BaseException) -> bool:
    """Predicate for loops that retry every failure (never a cancellation or an interrupt)."""
    return isinstance(exc, Exception)


def reason(exc: BaseException | None) -> str:
    """A failure as one bounded line: its type and the first line of its message."""
    if exc is None:
        return "no failure"
    text = str(exc).strip()
    first = text.splitlines()[0][:_REASON_MAX_CHARS] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@dataclass(frozen=True)
class Retry:
    """How one loop retries a call: ``retry_if`` decides, the back-off waits, ``give_up`` stops.

    A failure ``retry_if`` refuses is raised at once; once ``give_up()`` is true after a
    failure, that failure is raised. Without ``give_up`` the call is retried until it succeeds.
    """

    retry_if: Callable[[BaseException], bool]
    initial_s: float = DEFAULT_INITIAL_S
    max_s: float = DEFAULT_MAX_S
    #: The server-given wait a failure carries (Retry-After), if any: the next wait is no shorter.
    retry_after: Callable[[BaseException], float | None] | None = None
    #: Asked after each retryable failure: True = stop retrying and raise it.
    give_up: Callable[[], bool] | None = None
    #: Waits between tries; None = ``asyncio.sleep`` in :meth:`run`, ``time.sleep`` in :meth:`run_sync`.
    sleep: Callable[[float], Any] | None = None
    logger: logging.Logger = log
    level: int = logging.WARNING
    #: Log the failure's traceback with each retry (failures nobody foresaw).
    exc_info: bool = False
    #: Called before each retry's wait, e.g. to count it (spanline/metrics.py).
    on_retry: Callable[[], None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, retry_if: Callable[[BaseException], bool], **knobs: Any) -> Retry:
        """The policy with the back-off of ``retry_initial_s`` / ``retry_max_s``."""
        return cls(retry_if, settings.retry_initial_s, settings.retry_max_s, **knobs)

    async def run(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """``await call()`` until it succeeds, a failure is not retryable, or the policy gives up."""
        retrying = tenacity.AsyncRetrying(sleep=self.sleep or asyncio.sleep, **self._knobs(what))

        async def attempt() -> T:  # a coroutine function: tenacity awaits what it returns
            return await call()

        return await retrying(attempt)

    def run_sync(self, call: Callable[[], T], what: str) -> T:
        """``call()`` until it succeeds, a failure is not retryable, or the policy gives up (blocking)."""
        retrying = tenacity.Retrying(sleep=self.sleep or time.sleep, **self._knobs(what))
        return retrying(call)

    def _knobs(self, what: str) -> dict[str, Any]:
        return {
            "retry": tenacity.retry_if_exception(self.retry_if),
            "wait": self._wait,
            "stop": self._stop,
            "before_sleep": lambda state: self._log(what, state),
            "reraise": True,
        }

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = _failure(state)
        retry_after = self.retry_after(exc) if self.retry_after is not None and exc is not None else None
        return jittered_delay(state.attempt_number, self.initial_s, self.max_s, retry_after)

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        return self.give_up is not None and self.give_up()

    def _log(self, what: str, state: tenacity.RetryCallState) -> None:
        if self.on_retry is not None:
            self.on_retry()
        exc = _failure(state)
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        self.logger.log(
            self.level,
            "%s unavailable (%s); retry %d in %.1fs",
            what,
            reason(exc),
            state.attempt_number,
            delay,
            exc_info=exc if self.exc_info else None,
        )


def _failure(state: tenacity.RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None
