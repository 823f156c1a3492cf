"""A trace's spans as a tree: display order and depth, orphans, critical path and totals.

Pure: no I/O. Spans whose parent is not in the trace (lost, late, or sent by a service that
does not report) are *orphans*: shown at the top level with the parent they name, never dropped.
A span unreachable from any root or orphan (a parent cycle) is shown the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class SpanRow:
    """One span as the waterfall shows it; the names are the ``spans`` columns (sql/migrations/0001)."""

    span_id: str
    parent_span_id: str
    tenant_id: str
    service: str
    feature: str
    kind: str
    name: str
    start_time: datetime
    end_time: datetime
    duration_ms: float
    status: str
    error_type: str
    attempt: int
    provider: str
    model_requested: str
    model_response: str
    ttft_ms: float | None
    input_tokens: int
    cache_read_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: float
    cost_known: bool
    cache_layer: str
    cache_hit: bool | None
    route: str
    routing_reason: str
    prompt_id: str
    prompt_version: str
    index_name: str
    top_k: int | None
    tool_name: str
    eval_name: str
    eval_score: float | None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> SpanRow:
        """A row as a query returns it; times may be datetimes (direct) or text (the service's JSON)."""
        values = {name: record[name] for name in SPAN_COLUMNS}
        values["start_time"] = utc(values["start_time"])
        values["end_time"] = utc(values["end_time"])
        return cls(**values)


SPAN_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(SpanRow))


def utc(moment: Any) -> datetime:
    """A timezone-aware UTC datetime from a datetime (naive = UTC) or ISO text."""
    stamp = pd.Timestamp(moment)
    aware: datetime = (stamp.tz_convert(UTC) if stamp.tzinfo else stamp.tz_localize(UTC)).to_pydatetime()
    return aware


@dataclass(frozen=True)
class WaterfallRow:
    """A span in display order: ``depth`` for indentation, ``guide`` the tree lines before its name."""

    span: SpanRow
    depth: int
    guide: str
    orphan: bool
    critical_ms: float  # time this span itself contributes to the critical path (0 = not on it)

    @property
    def on_critical_path(self) -> bool:
        return self.critical_ms > 0


@dataclass(frozen=True)
class Totals:
    spans: int
    errors: int
    retries: int
    cost_usd: float
    input_tokens: int
    cache_read_tokens: int
    output_tokens: int
    reasoning_tokens: int
    duration_ms: float
    critical_path_ms: float
    critical_by_kind: dict[str, float] = field(default_factory=dict)  # kind -> ms, largest first


@dataclass(frozen=True)
class Trace:
    trace_id: str
    start: datetime
    end: datetime
    rows: tuple[WaterfallRow, ...]
    totals: Totals

    @property
    def tenants(self) -> tuple[str, ...]:
        return tuple(sorted({row.span.tenant_id for row in self.rows}))

    @property
    def orphans(self) -> tuple[WaterfallRow, ...]:
        return tuple(row for row in self.rows if row.orphan)

    def offset_ms(self, moment: datetime) -> float:
        """Milliseconds from the trace's first span start: the waterfall's one time scale."""
        return (moment - self.start).total_seconds() * 1000.0


def build_trace(trace_id: str, spans: list[SpanRow]) -> Trace:
    """The waterfall of ``spans`` (one trace): every span appears once, in tree order."""
    if not spans:
        raise ValueError(f"trace {trace_id} has no spans")
    by_id: dict[str, SpanRow] = {}
    for span in sorted(spans, key=_start_order):
        by_id.setdefault(span.span_id, span)
    children: dict[str, list[SpanRow]] = defaultdict(list)
    tops: list[SpanRow] = []
    for span in by_id.values():
        if span.parent_span_id and span.parent_span_id in by_id and span.parent_span_id != span.span_id:
            children[span.parent_span_id].append(span)
        else:
            tops.append(span)
    critical = _critical_times(tops, children)
    rows: list[WaterfallRow] = []
    seen: set[str] = set()
    for top in tops:
        _walk(top, children, critical, rows, seen, depth=0, guide="", orphan=bool(top.parent_span_id))
    for span in by_id.values():  # parent cycles: nothing above them is a root or an orphan
        if span.span_id not in seen:
            _walk(span, children, critical, rows, seen, depth=0, guide="", orphan=True)
    start = min(span.start_time for span in by_id.values())
    end = max(span.end_time for span in by_id.values())
    return Trace(trace_id, start, end, tuple(rows), _totals(list(by_id.values()), critical, start, end))


def _start_order(span: SpanRow) -> tuple[datetime, str]:
    return span.start_time, span.span_id


def _walk(
    span: SpanRow,
    children: dict[str, list[SpanRow]],
    critical: dict[str, float],
    rows: list[WaterfallRow],
    seen: set[str],
    depth: int,
    guide: str,
    orphan: bool,
) -> None:
    """Depth-first, children by start time, each span once (an explicit stack: no recursion limit)."""
    stack: list[tuple[SpanRow, int, str, str, bool]] = [(span, depth, guide, "", orphan)]
    while stack:
        current, level, prefix, branch, is_orphan = stack.pop()
        if current.span_id in seen:
            continue
        seen.add(current.span_id)
        rows.append(WaterfallRow(current, level, prefix + branch, is_orphan, critical.get(current.span_id, 0.0)))
        kids = [kid for kid in children.get(current.span_id, []) if kid.span_id not in seen]
        below = prefix + ("│  " if branch == "├─ " else "   " if branch else "")
        for index in range(len(kids) - 1, -1, -1):
            stack.append((kids[index], level + 1, below, "└─ " if index == len(kids) - 1 else "├─ ", False))


def _critical_times(tops: list[SpanRow], children: dict[str, list[SpanRow]]) -> dict[str, float]:
    """Per span, the milliseconds it alone holds the trace's end back (Jaeger's critical path).

    From the top span ending last, walk back from its end: the child that ends last before the
    cursor is on the path (recursively, up to the cursor), the gaps between such children are
    the parent's own time, and the cursor moves to that child's start.
    """
    if not tops:
        return {}
    first = min(span.start_time for span in tops)
    last = max(tops, key=lambda span: (span.end_time, span.start_time == first))
    times: dict[str, float] = defaultdict(float)
    work: list[tuple[SpanRow, datetime]] = [(last, last.end_time)]
    while work:
        span, until = work.pop()
        cursor = min(span.end_time, until)
        for child in sorted(children.get(span.span_id, []), key=lambda c: c.end_time, reverse=True):
            if child.start_time >= cursor or child.end_time <= span.start_time:
                continue
            child_end = min(child.end_time, cursor)
            times[span.span_id] += _ms(child_end, cursor)
            work.append((child, child_end))
            cursor = max(child.start_time, span.start_time)
        times[span.span_id] += _ms(span.start_time, cursor)
    return {span_id: ms for span_id, ms in times.items() if ms > 0}


def _ms(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds() * 1000.0, 0.0)


def _totals(spans: list[SpanRow], critical: dict[str, float], start: datetime, end: datetime) -> Totals:
    kinds = {span.span_id: span.kind for span in spans}
    by_kind: dict[str, float] = defaultdict(float)
    for span_id, ms in critical.items():
        by_kind[kinds[span_id]] += ms
    return Totals(
        spans=len(spans),
        errors=sum(span.status == "error" for span in spans),
        retries=sum(span.attempt > 0 for span in spans),
        cost_usd=sum(span.cost_usd for span in spans),
        input_tokens=sum(span.input_tokens for span in spans),
        cache_read_tokens=sum(span.cache_read_tokens for span in spans),
        output_tokens=sum(span.output_tokens for span in spans),
        reasoning_tokens=sum(span.reasoning_tokens for span in spans),
        duration_ms=_ms(start, end),
        critical_path_ms=sum(critical.values()),
        critical_by_kind=dict(sorted(by_kind.items(), key=lambda item: -item[1])),
    )
