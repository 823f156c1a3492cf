"""Isolating data faults: split a failing range in halves until the failing items are found.

A step over items ``[start, stop)`` (spans of a batch, rows of an insert block) either
succeeds, fails transiently (re-raised: the caller retries the same work), or fails because
of some item's content. Then the range is halved and each half tried on its own, down to
single items: every item that fails alone is a fault, every range that succeeded is a
result. The same inputs split the same way, so a batch replayed after a crash yields the same
ranges (and so the same insert deduplication tokens) as the first time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from spanline.streams.faults import is_transient

T = TypeVar("T")


@dataclass
class Isolated(Generic[T]):
    """What a step made of ``[start, stop)``: results of the ranges that worked, and faults."""

    results: list[tuple[int, int, T]] = field(default_factory=list)
    faults: list[tuple[int, BaseException]] = field(default_factory=list)

    def extend(self, other: Isolated[T]) -> None:
        self.results += other.results
        self.faults += other.faults


def isolate(start: int, stop: int, step: Callable[[int, int], T]) -> Isolated[T]:
    """Run ``step(start, stop)``, isolating the items whose content makes it fail."""
    if start >= stop:
        return Isolated()
    try:
        return Isolated(results=[(start, stop, step(start, stop))])
    except Exception as exc:
        if is_transient(exc):
            raise
        if stop - start == 1:
            return Isolated(faults=[(start, exc)])
    middle = (start + stop) // 2
    outcome = isolate(start, middle, step)
    outcome.extend(isolate(middle, stop, step))
    return outcome
