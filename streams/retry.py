"""Back-off shared by everything that waits for ClickHouse or Kafka to come back."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from spanline.streams.faults import describe, is_transient

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Backoff:
    """Exponential back-off with full jitter, capped; ``reset()`` after a success."""

    initial_s: float
    max_s: float
    attempts: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.initial_s * (2**self.attempts))
        self.attempts += 1
        return random.uniform(self.initial_s / 2, ceiling)

    def reset(self) -> None:
        self.attempts = 0


async def retry_transient(call: Callable[[], Awaitable[T]], backoff: Backoff, what: str) -> T:
    """Await ``call()`` until it succeeds, sleeping between transient failures; any other
    failure is raised at once (streams/faults.py decides which is which)."""
    while True:
        try:
            result = await call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = backoff.next_delay()
            log.warning("%s unavailable (%s); retrying in %.1fs", what, describe(exc), delay)
            await asyncio.sleep(delay)
            continue
        backoff.reset()
        return result
