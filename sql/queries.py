"""Running read-only SQL from the CLI: through the running worker when it owns chDB, else directly.

Either way the query runs in :func:`read_only_query`, on a ClickHouse session of its own, so a
tenant scope (:mod:`spanline.sql.tenant_scope`) is applied where the data is, not by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib import error, request

import orjson

from spanline.errors import SpanlineError
from spanline.settings import Settings
from spanline.sql.client import connect
from spanline.sql.service_file import ServiceFile
from spanline.sql.tenant_scope import check_statement, enter_tenant_scope, parse_statement


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]


def run_query(
    settings: Settings, sql: str, parameters: dict[str, Any] | None = None, tenant: str | None = None
) -> QueryResult:
    """Run ``sql`` read-only; with ``tenant``, it sees only that tenant's rows (or is refused)."""
    if settings.embedded_clickhouse:
        service = ServiceFile(settings.home).read()
        if service is not None:
            return _remote(service.query_url, service.token, sql, parameters, tenant)
    return read_only_query(settings, sql, parameters, tenant)


def read_only_query(
    settings: Settings, sql: str, parameters: dict[str, Any] | None = None, tenant: str | None = None
) -> QueryResult:
    """``sql`` on a fresh session: read-only, and scoped to ``tenant`` when one is given.

    A session of its own, because a scoped session stays read-only for good (that is what
    keeps the scope in place) and must never be a connection that also writes.
    """
    database = settings.clickhouse_database
    client = connect(
        settings.resolved_clickhouse_url,
        database=database if tenant is not None else None,
        password=settings.clickhouse_password,
    )
    try:
        if tenant is None:
            parse_statement(client, sql, parameters)
            result = client.query(sql, parameters=parameters, settings={"readonly": 2})
        else:
            tables = enter_tenant_scope(client, database, tenant)
            check_statement(client, sql, database, tables, parameters)
            result = client.query(sql, parameters=parameters)
    finally:
        client.close()  # a chDB path stays locked while any client of this process holds it
    return QueryResult(list(result.column_names), [list(row) for row in result.result_rows])


def _remote(url: str, token: str, sql: str, parameters: dict[str, Any] | None, tenant: str | None) -> QueryResult:
    wire = {name: _wire_value(value) for name, value in (parameters or {}).items()}
    body = orjson.dumps({"sql": sql, "parameters": wire, "tenant": tenant})
    req = request.Request(url, data=body, headers={"Authorization": f"Bearer {token}"}, method="POST")
    try:
        with request.urlopen(req, timeout=60) as response:
            payload = orjson.loads(response.read())
    except error.HTTPError as exc:
        raise SpanlineError(f"query failed: {orjson.loads(exc.read()).get('error', exc)}") from exc
    except error.URLError as exc:
        raise SpanlineError(f"the running Spanline service at {url} did not answer: {exc.reason}") from exc
    return QueryResult(payload["columns"], payload["rows"])


def _wire_value(value: Any) -> Any:
    """A parameter as JSON can carry it and ClickHouse parses it back: datetimes become UTC
    'YYYY-MM-DD hh:mm:ss.ffffff' text, the form a {name:DateTime64(…)} binding accepts (ISO 8601's
    'T' and offset are refused)."""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value
