"""Spans to JSON bytes, standard library only; a span that cannot be encoded loses only itself.

Callers put values of their own into spans (numpy numbers, sets, objects): numbers are turned
into Python numbers, anything else that is not JSON makes that span alone a rejection, never
a failed batch. NaN and infinity are refused too (the receiver would reject the whole body).
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rejected:
    """A span the SDK or the receiver refused for its content: its index in the batch and why."""

    index: int
    reason: str


def _jsonable(value: object) -> object:
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON-encodable")


_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_jsonable)


def encode(spans: Sequence[Mapping[str, Any]]) -> bytes:
    """A JSON array of the spans; raises ValueError or TypeError when one of them cannot be encoded."""
    return _encoder.encode(list(spans)).encode()


def encodable(spans: Sequence[dict[str, Any]]) -> tuple[list[int], list[Rejected]]:
    """Indexes of the spans that encode alone, and the others with their reason (the slow path)."""
    kept: list[int] = []
    rejected: list[Rejected] = []
    for index, span in enumerate(spans):
        try:
            _encoder.encode(span).encode()
        except (TypeError, ValueError) as exc:
            rejected.append(Rejected(index, f"not encodable as JSON: {exc}"))
        else:
            kept.append(index)
    return kept, rejected
