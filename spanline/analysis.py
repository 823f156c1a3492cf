"""`spanline sql list|show|run`: the named analysis queries (sql/queries) from the command line.

A query is bound from ``--param name=value`` strings by the library (typed, defaults filled,
unknown names refused) and run read-only through :func:`spanline.sql.queries.run_query`, so it
works both on a ClickHouse server and on the embedded chDB owned by a running worker.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

import orjson
from rich.syntax import Syntax
from rich.table import Table

from spanline.errors import ConfigError
from spanline.settings import Settings
from spanline.sql.library import NamedQuery, load_library
from spanline.sql.queries import QueryResult, run_query

FORMATS = ("table", "csv", "json")


def named_query(name: str) -> NamedQuery:
    """The library query ``name``, or a ConfigError listing the names there are."""
    library = load_library()
    if name not in library:
        raise ConfigError(f"no query named {name!r}; `spanline sql list` shows them: {', '.join(sorted(library))}")
    return library[name]


def library_table() -> Table:
    """Every query: its name, the question it answers and its parameters."""
    table = Table(title="SQL library (sql/queries)", title_justify="left", show_lines=True)
    table.add_column("name", no_wrap=True)
    table.add_column("question")
    table.add_column("parameters")
    for query in load_library().values():
        table.add_row(query.name, query.question, "\n".join(_describe(name, query) for name in query.params))
    return table


def query_source(name: str, database: str) -> Syntax:
    """The query as it will run: ``${database}`` filled, parameters left for the server to bind."""
    query = named_query(name)
    return Syntax(f"-- {query.question}\n{query.render(database)}", "sql", word_wrap=True)


def run_named(settings: Settings, name: str, raw: dict[str, str], tenant: str | None = None) -> QueryResult:
    """Run query ``name``; with ``tenant``, ClickHouse itself restricts it to that tenant's rows."""
    query = named_query(name)
    if tenant is not None and raw.setdefault("tenant", tenant) != tenant:
        raise ConfigError(f"--tenant {tenant} conflicts with --param tenant={raw['tenant']}")
    return run_query(settings, query.render(settings.clickhouse_database), query.bind(raw), tenant=tenant)


def formatted(result: QueryResult, output: str, title: str = "") -> Table | str:
    """The result as a rich table, CSV text or a JSON array of objects."""
    if output == "json":
        records = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        return orjson.dumps(records, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([_cell(value, exact=True) for value in row] for row in result.rows)
        return buffer.getvalue().rstrip("\n")
    if output != "table":
        raise ConfigError(f"unknown format {output!r}; choose one of {', '.join(FORMATS)}")
    table = Table(title=title or None, title_justify="left")
    for index, column in enumerate(result.columns):
        numeric = any(isinstance(row[index], int | float) and not isinstance(row[index], bool) for row in result.rows)
        table.add_column(column, justify="right" if numeric else "left")
    for row in result.rows:
        table.add_row(*(_cell(value) for value in row))
    return table


def _describe(name: str, query: NamedQuery) -> str:
    param = query.params[name]
    return f"{name} {param.type}" + ("" if param.default is None else f" = {param.default}")


def _cell(value: Any, exact: bool = False) -> str:
    """A value as text: tables round floats to 6 significant digits, CSV keeps every digit."""
    if value is None:
        return ""
    if isinstance(value, float) and not exact:
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)
