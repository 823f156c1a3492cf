"""Reading traces from ClickHouse: one trace's spans, and the traces of a window ranked.

Both take a :data:`Runner` (SQL + bound parameters -> rows), so the same code runs through the
CLI's read-only path (:func:`spanline.sql.queries.run_query`, tenant scope included), a
clickhouse-connect client (:func:`client_runner`, the alert worker) or the report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from spanline.errors import ConfigError
from spanline.sql.queries import QueryResult
from spanline.sql.statements import render_statement
from spanline.traces.ranks import RANKS
from spanline.traces.tree import SPAN_COLUMNS, SpanRow, Trace, build_trace, utc

Runner = Callable[[str, dict[str, Any]], QueryResult]


def client_runner(client: Client) -> Runner:
    """A Runner on an open client (the caller owns its session and scope)."""

    def run(sql: str, parameters: dict[str, Any]) -> QueryResult:
        result = client.query(sql, parameters=parameters)
        return QueryResult(list(result.column_names), [list(row) for row in result.result_rows])

    return run


def fetch_trace(run: Runner, database: str, trace_id: str) -> Trace | None:
    """The trace's waterfall, or None when no span of it is stored (or visible to the scope).

    The lookup table gives the tenant and start-time range, so the spans query prunes by the
    sort key; a trace without a lookup row (stored before it existed) is found by a scan.
    """
    located = _records(run(render_statement("trace_locate", database=database), {"trace_id": trace_id}))
    if located:
        sql = render_statement("trace_spans", database=database, columns=SPAN_COLUMNS)
        parameters: dict[str, Any] = {
            "trace_id": trace_id,
            "tenants": [row["tenant_id"] for row in located],
            "first_start": min(utc(row["first_start"]) for row in located),
            "last_start": max(utc(row["last_start"]) for row in located),
        }
        records = _records(run(sql, parameters))
    else:
        sql = render_statement("trace_spans_scan", database=database, columns=SPAN_COLUMNS)
        records = _records(run(sql, {"trace_id": trace_id}))
    if not records:
        return None
    return build_trace(trace_id, [SpanRow.from_record(record) for record in records])


#: Span columns a ranking can be scoped by, and the statement's parameter for each.
SCOPE_PARAMETERS = {
    "tenant_id": "tenant",
    "service": "service",
    "feature": "feature",
    "provider": "provider",
    "model_requested": "model",
    "route": "route",
}


@dataclass(frozen=True)
class RankedTrace:
    """One trace of a window with the figures that rank it."""

    trace_id: str
    tenant: str
    root_feature: str
    root_name: str
    started: datetime
    duration_ms: float
    cost_usd: float
    tokens: int
    spans: int
    errors: int
    root_failed: bool
    retries: int


def rank_traces(
    run: Runner,
    database: str,
    rank: str,
    since: datetime,
    until: datetime,
    limit: int = 10,
    scope: Mapping[str, str] | None = None,
) -> list[RankedTrace]:
    """The ``limit`` worst traces started in [since, until) by ``rank``, among the traces with a
    span matching ``scope`` (span column -> value, e.g. an alert's scope; absent or '' = any)."""
    if rank not in RANKS:
        raise ConfigError(f"unknown trace ranking {rank!r}; choose one of {', '.join(RANKS)}")
    if limit < 1:
        raise ConfigError(f"the number of traces must be at least 1, got {limit}")
    unknown = sorted(set(scope or {}) - SCOPE_PARAMETERS.keys())
    if unknown:
        raise ConfigError(f"traces cannot be scoped by {', '.join(unknown)}; use {', '.join(SCOPE_PARAMETERS)}")
    filters = {parameter: (scope or {}).get(column, "") for column, parameter in SCOPE_PARAMETERS.items()}
    parameters: dict[str, Any] = {"since": since, "until": until, **filters, "rank": rank, "limit": limit}
    records = _records(run(render_statement("traces_ranked", database=database), parameters))
    return [
        RankedTrace(
            trace_id=str(r["trace_id"]),
            tenant=str(r["tenant"]),
            root_feature=str(r["root_feature"]),
            root_name=str(r["root_name"]),
            started=utc(r["started"]),
            duration_ms=float(r["duration_ms"]),
            cost_usd=float(r["cost_usd"]),
            tokens=int(r["tokens"]),
            spans=int(r["spans"]),
            errors=int(r["errors"]),
            root_failed=bool(r["root_failed"]),
            retries=int(r["retries"]),
        )
        for r in records
    ]


def _records(result: QueryResult) -> list[dict[str, Any]]:
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]
