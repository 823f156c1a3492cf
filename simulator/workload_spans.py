"""Column-wise span collection for the workload: stages add whole arrays, dicts are built once.

Stages of the simulated application add spans for many requests at a time, as numpy
columns. Only at the end are rows turned into plain-Python dicts (what ``orjson`` and the
receiver take) and put in trace order: root first, then children by start time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np

#: A field value: one value for every row, or one per row.
Column = np.ndarray | Sequence[object] | dict[str, str] | str | int | float | bool | None


@dataclass(frozen=True)
class RequestColumns:
    """Per-request values every span of the request carries (object arrays, one row a request)."""

    trace_id: np.ndarray
    tenant_id: np.ndarray
    service: np.ndarray
    feature: np.ndarray
    session_id: np.ndarray
    user_id: np.ndarray | None


@dataclass(frozen=True)
class _Group:
    req: np.ndarray
    span_id: np.ndarray
    parent: np.ndarray | None
    kind: str
    start: np.ndarray
    duration: np.ndarray
    fields: dict[str, Column]
    root: bool


def hex_strings(raw: bytes, nbytes: int) -> np.ndarray:
    """Split ``raw`` into ``nbytes``-byte pieces, each as a lowercase-hex ``str`` (object array)."""
    width = 2 * nbytes
    return np.frombuffer(raw.hex().encode(), dtype=f"S{width}").astype(f"U{width}").astype(object)


def hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    """``n`` random lowercase-hex ids of ``nbytes`` bytes, from one draw (deterministic per rng)."""
    return hex_strings(rng.bytes(n * nbytes), nbytes)


def rfc3339_ms(epoch_ms: np.ndarray) -> list[str]:
    """Integer epoch milliseconds → ``YYYY-MM-DDTHH:MM:SS.mmmZ`` strings, in one numpy call."""
    stamps = epoch_ms.astype(np.int64).astype("datetime64[ms]")
    strings: list[str] = np.datetime_as_string(stamps, unit="ms", timezone="UTC").tolist()
    return strings


def _values(column: Column, n: int) -> Sequence[object] | repeat[object]:
    """One value per row; a constant dict is copied per row so no two spans share it."""
    if isinstance(column, np.ndarray):
        values: list[object] = column.tolist()
        return values
    if isinstance(column, list | tuple):
        return column
    if isinstance(column, dict):
        return [dict(column) for _ in range(n)]
    return repeat(column, n)


class SpanSink:
    """Collects span groups for one block of requests and renders them in trace order."""

    def __init__(self, rng: np.random.Generator, requests: RequestColumns, epoch_ms: int) -> None:
        self._rng = rng
        self._requests = requests
        self._epoch_ms = epoch_ms
        self._groups: list[_Group] = []

    def new_ids(self, n: int) -> np.ndarray:
        """Span ids reserved before the span is added, so children can point at their parent."""
        return hex_ids(self._rng, n, 8)

    def add(
        self,
        req: np.ndarray,
        kind: str,
        start: np.ndarray,
        duration: np.ndarray,
        parent: np.ndarray | None,
        span_id: np.ndarray | None = None,
        /,
        **fields: Column,
    ) -> np.ndarray:
        """Add one span per row of ``req`` and return their span ids.

        ``start`` is in whole milliseconds after the epoch given to the sink, ``duration``
        in milliseconds; ``parent`` is None only for root spans; ``span_id`` is given when the
        ids were reserved with :meth:`new_ids`. The arguments before ``fields`` are positional,
        so no field name can be taken for one of them.
        """
        n = len(req)
        ids = self.new_ids(n) if span_id is None else span_id
        if n:
            self._groups.append(_Group(req, ids, parent, kind, start, duration, fields, parent is None))
        return ids

    def render(self) -> tuple[list[dict[str, object]], np.ndarray]:
        """All spans as dicts in trace order, and the request row of each."""
        if not self._groups:
            return [], np.empty(0, dtype=np.int64)
        req = np.concatenate([g.req for g in self._groups])
        start = np.concatenate([g.start for g in self._groups])
        rank = np.concatenate([np.full(len(g.req), 0 if g.root else 1) for g in self._groups])
        stamps = rfc3339_ms(start + self._epoch_ms)
        spans: list[dict[str, object]] = []
        offset = 0
        for group in self._groups:
            n = len(group.req)
            spans.extend(self._rows(group, stamps[offset : offset + n]))
            offset += n
        order = np.lexsort((np.arange(len(req)), start, rank, req))
        return [spans[i] for i in order.tolist()], req[order]

    def _rows(self, group: _Group, stamps: list[str]) -> list[dict[str, object]]:
        n = len(group.req)
        r = self._requests
        columns: dict[str, Column] = {
            "span_id": group.span_id,
            "trace_id": r.trace_id[group.req],
            "parent_span_id": group.parent,
            "tenant_id": r.tenant_id[group.req],
            "service": r.service[group.req],
            "feature": r.feature[group.req],
            "environment": "production",
            "kind": group.kind,
            "start_time": stamps,
            "duration_ms": np.round(group.duration, 3),
            "session_id": r.session_id[group.req],
        }
        if r.user_id is not None:
            columns["user_id"] = r.user_id[group.req]
        columns.update(group.fields)
        keys = list(columns)
        values = [_values(columns[key], n) for key in keys]
        return [dict(zip(keys, row, strict=True)) for row in zip(*values, strict=True)]
