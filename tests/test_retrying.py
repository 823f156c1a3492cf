"""The one retry policy (spanline/retrying.py): its back-off, its predicate, giving up,
Retry-After and its log line, with the sleep injected so nothing here waits."""

from __future__ import annotations

import asyncio
import logging

import pytest

from spanline.retrying import Retry, any_error, jittered_delay, reason


class Flaky:
    """Fails with ``errors`` in turn, then returns ``"done"``; records every try."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.tries = 0

    def __call__(self) -> str:
        self.tries += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


class Slept:
    """The injected sleep: records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def pause(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_the_delay_grows_exponentially_with_jitter_between_half_the_first_and_the_cap() -> None:
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10_000, 5.0)]:
        delays = [jittered_delay(attempt, 1.0, 5.0) for _ in range(200)]
        assert all(0.5 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 100, "jittered"
    assert jittered_delay(1, 1.0, 5.0, retry_after_s=7.0) == 7.0, "Retry-After is a minimum"
    assert 0.5 <= jittered_delay(1, 1.0, 5.0, retry_after_s=0.1) <= 1.0


def test_retryable_failures_are_retried_until_success_and_each_retry_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slept = Slept()
    call = Flaky(ConnectionError("refused"), TimeoutError())
    retry = Retry(lambda exc: isinstance(exc, OSError), initial_s=0.2, max_s=1.0, sleep=slept)
    with caplog.at_level(logging.WARNING, logger="spanline.retrying"):
        assert retry.run_sync(call, "ClickHouse") == "done"
    assert call.tries == 3 and len(slept.waits) == 2
    assert 0.1 <= slept.waits[0] <= 0.2 and 0.1 <= slept.waits[1] <= 0.4
    assert [record.getMessage() for record in caplog.records] == [
        f"ClickHouse unavailable (ConnectionError: refused); retry 1 in {slept.waits[0]:.1f}s",
        f"ClickHouse unavailable (TimeoutError); retry 2 in {slept.waits[1]:.1f}s",
    ]


def test_a_failure_the_predicate_refuses_is_raised_at_once() -> None:
    slept = Slept()
    call = Flaky(ConnectionError(), ValueError("bad data"))
    with pytest.raises(ValueError, match="bad data"):
        Retry(lambda exc: isinstance(exc, ConnectionError), sleep=slept).run_sync(call, "storage")
    assert call.tries == 2 and len(slept.waits) == 1


def test_giving_up_raises_the_last_failure() -> None:
    slept = Slept()
    call = Flaky(*[ConnectionError(f"try {n}") for n in range(10)])
    retry = Retry(any_error, give_up=lambda: len(slept.waits) >= 3, sleep=slept)
    with pytest.raises(ConnectionError, match="try 3"):
        retry.run_sync(call, "receiver")
    assert call.tries == 4


def test_a_server_given_retry_after_is_honoured() -> None:
    class Limited(Exception):
        retry_after_s = 12.0

    slept = Slept()
    retry = Retry(
        any_error, initial_s=0.1, max_s=1.0, retry_after=lambda exc: getattr(exc, "retry_after_s", None), sleep=slept
    )
    assert retry.run_sync(Flaky(Limited(), ConnectionError()), "notifier") == "done"
    assert slept.waits[0] == 12.0 and slept.waits[1] <= 0.2


def test_async_calls_are_retried_with_the_injected_sleep() -> None:
    slept = Slept()
    call = Flaky(ConnectionError(), ConnectionError())

    async def once() -> str:
        return call()

    retry = Retry(any_error, initial_s=30.0, max_s=60.0, sleep=slept.pause)
    assert asyncio.run(retry.run(once, "Kafka")) == "done"
    assert call.tries == 3 and len(slept.waits) == 2 and all(15.0 <= wait <= 60.0 for wait in slept.waits)


def test_a_cancellation_is_never_retried() -> None:
    slept = Slept()
    with pytest.raises(KeyboardInterrupt):
        Retry(any_error, sleep=slept).run_sync(Flaky(KeyboardInterrupt()), "anything")
    assert slept.waits == []


def test_the_reason_is_one_bounded_line() -> None:
    assert reason(ValueError("first\nsecond")) == "ValueError: first"
    assert reason(ValueError()) == "ValueError"
    assert len(reason(ValueError("x" * 10_000))) < 400
