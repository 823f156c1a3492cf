"""Back-off shared by everything that waits for ClickHouse or Kafka to come back."""

from __future__ import annotations

import random
from dataclasses import dataclass


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
