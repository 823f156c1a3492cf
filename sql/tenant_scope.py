"""Tenant-scoped ad-hoc SQL: a query sees one tenant's rows and nothing else.

Two layers, because either alone has a hole (both measured on chDB 26.9):

* **ClickHouse enforces the filter.** The scoped session sets ``additional_table_filters``
  to ``tenant_id = '<tenant>'`` for every Spanline table that has a ``tenant_id`` column and
  then ``readonly = 1``. From then on the session refuses to change any setting, so neither a
  ``SETTINGS`` clause (top level or in a subquery) nor ``SET`` can lift the filter, and the
  filter follows the table into subqueries, CTEs, joins and views.
* **The statement is checked before it runs** (ClickHouse's own parser, ``EXPLAIN AST``,
  which parses without executing). The filter binds to named tables only, so a table function
  such as ``merge('spanline', '.*')`` reads around it, and system tables, other databases,
  Spanline tables without ``tenant_id`` (the ingest ledger, migrations) and dictionary lookups
  are not tenant data at all. Those are refused with an error that says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client

from spanline.errors import SpanlineError
from spanline.sql.statements import statement
from spanline.sql.templates import render

#: Statement kinds that can be scoped: SELECT, with UNION/INTERSECT/EXCEPT and CTEs.
_SELECT_ROOTS = ("SelectWithUnionQuery", "SelectIntersectExceptQuery")
#: Scalar functions that read data other than the scoped tables.
_DATA_READING_FUNCTION = re.compile(
    r"^(dict\w*|joinGet\w*|file|hasColumnInTable|getServerSetting|getMacro|catboostEvaluate|"
    r"filesystem\w+|getClientHTTPHeader|getSubcolumn|globalVariable)$",
    re.IGNORECASE,
)
#: ``x IN table`` reads the table without a TableExpression; IN (SELECT …) is checked normally.
_IN_FUNCTIONS = frozenset(
    {"in", "notIn", "globalIn", "globalNotIn", "nullIn", "notNullIn", "globalNullIn", "globalNotNullIn"}
)
_AST_LINE = re.compile(r"^(?P<indent> *)(?P<node>\S+)(?: (?P<name>.*?))?(?: \(alias [^)]*\))?(?: \(children \d+\))?$")


class ScopeError(SpanlineError):
    """The query cannot be restricted to one tenant; the message says what to change."""


@dataclass
class _Node:
    kind: str
    name: str
    children: list[_Node] = field(default_factory=list)


def quote(text: str) -> str:
    """A ClickHouse string literal for ``text``: backslash and quote escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def scoped_tables(client: Client, database: str) -> list[str]:
    """Tables and views of ``database`` that carry a ``tenant_id`` column (the scopable ones)."""
    rows = client.query(statement("tenant_scope_tables"), parameters={"database": database}).result_rows
    return [table for (table,) in rows]


def filter_setting(database: str, tables: list[str], tenant: str) -> str:
    """The ``additional_table_filters`` map literal restricting every table to ``tenant``."""
    condition = f"tenant_id = {quote(tenant)}"
    entries = [f"{quote(f'{database}.{table}')}: {quote(condition)}" for table in tables]
    return "{" + ", ".join(entries) + "}"


def enter_tenant_scope(client: Client, database: str, tenant: str) -> list[str]:
    """Make ``client``'s session see only ``tenant``'s rows, for good; returns the scoped tables.

    The filter is set first and ``readonly = 1`` last: after that the session cannot change
    any setting again, the filter included.
    """
    if not tenant or not tenant.isprintable():
        raise ScopeError(f"--tenant must be a non-empty tenant id of printable characters, got {tenant!r}")
    tables = scoped_tables(client, database)
    if not tables:
        raise ScopeError(f"database {database!r} has no tables with a tenant_id column; run `spanline migrate` first")
    client.command(render(statement("tenant_scope_filter"), {"filters": filter_setting(database, tables, tenant)}))
    client.command(statement("tenant_scope_read_only"))
    return tables


def parse_statement(client: Client, sql: str, parameters: dict[str, Any] | None = None) -> _Node:
    """``sql``'s syntax tree from ClickHouse's own parser (nothing runs), refusing INTO OUTFILE:
    chDB writes that file even in a read-only session, on the host of the process that owns it."""
    try:
        lines = [row[0] for row in client.query(f"EXPLAIN AST {sql}", parameters=parameters).result_rows]
    except Exception as exc:  # the parser's own message says what is wrong with the SQL
        raise ScopeError(f"cannot parse the query: {str(exc).splitlines()[0]}") from exc
    root = _tree(lines)
    if any(child.kind == "Literal" for child in root.children):  # the OUTFILE path hangs off the root
        raise ScopeError("INTO OUTFILE is not allowed: use --format csv|json and redirect the output")
    return root


def check_statement(
    client: Client, sql: str, database: str, tables: list[str], parameters: dict[str, Any] | None = None
) -> None:
    """Raise ScopeError unless ``sql`` is one SELECT reading only ``tables`` of ``database``."""
    rows = client.query(statement("tenant_scope_existing_tables"), parameters={"database": database}).result_rows
    existing = {f"{database}.{name}" for (name,) in rows}
    root = parse_statement(client, sql, parameters)
    if root.kind not in _SELECT_ROOTS:
        raise ScopeError(f"only SELECT queries can be scoped to a tenant, not {root.kind}")
    allowed = {f"{database}.{table}" for table in tables}
    for parent, node in _walk(root):
        if parent is not None and parent.kind == "TableExpression":
            _check_table_source(node, database, allowed, existing)
        if node.kind == "Function":
            _check_function(node, database, existing)


def _check_table_source(node: _Node, database: str, allowed: set[str], existing: set[str]) -> None:
    if node.kind == "Function":
        raise ScopeError(
            f"table function {node.name}() reads around the tenant filter; query the {database} tables directly"
        )
    if node.kind == "TableIdentifier":
        _check_table(node.name, database, allowed, existing)


def _check_function(node: _Node, database: str, existing: set[str]) -> None:
    if _DATA_READING_FUNCTION.match(node.name):
        raise ScopeError(f"{node.name}() reads data outside the tenant's tables and is not allowed in a scoped query")
    if node.name in _IN_FUNCTIONS and node.children and len(node.children[0].children) == 2:
        right = node.children[0].children[1]
        names_table = "." in right.name or f"{database}.{right.name}" in existing
        if right.kind == "Identifier" and names_table:
            raise ScopeError(f"write `IN (SELECT … FROM {right.name})` instead of `IN {right.name}` in a scoped query")


def _check_table(name: str, database: str, allowed: set[str], existing: set[str]) -> None:
    """A qualified name must be a scoped table. A bare name is a CTE or a table of ``database``
    (the scoped session's default database): it must be scoped if such a table exists."""
    qualified = name if "." in name else f"{database}.{name}"
    if qualified in allowed or ("." not in name and qualified not in existing):
        return
    if qualified.split(".", 1)[0] != database:
        raise ScopeError(f"{name} is outside the {database} database; a scoped query reads only {database} tables")
    raise ScopeError(
        f"{name} has no tenant_id column, so it cannot be scoped to a tenant; scopable: "
        + ", ".join(sorted(table.split(".", 1)[1] for table in allowed))
    )


def _tree(lines: list[str]) -> _Node:
    """Rebuild EXPLAIN AST's indented listing as a tree."""
    root = _Node("", "")
    stack: list[tuple[int, _Node]] = [(-1, root)]
    for line in lines:
        match = _AST_LINE.match(line)
        if match is None:
            raise ScopeError(f"unexpected EXPLAIN AST line {line!r}")
        depth = len(match.group("indent"))
        node = _Node(match.group("node"), (match.group("name") or "").strip())
        while stack[-1][0] >= depth:
            stack.pop()
        stack[-1][1].children.append(node)
        stack.append((depth, node))
    if len(root.children) != 1:
        raise ScopeError("a scoped query must be exactly one statement")
    return root.children[0]


def _walk(node: _Node, parent: _Node | None = None) -> Any:
    yield parent, node
    for child in node.children:
        yield from _walk(child, node)
