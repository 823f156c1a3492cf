"""The pipeline's own SQL statements, one ``sql/statements/<name>.sql`` file each.

Why files: the SQL reads, diffs and is checked as SQL (tests/test_sql_statements.py parses
every file in chDB), not as Python string fragments. A file may open with ``--`` comment lines
saying what the statement is for; they are dropped on load. Values reach ClickHouse only
through its server-side binding ``{name:Type}``; ``${name}`` placeholders take identifiers
(database, table and column names), filled as the migrations fill ``${database}``
(:func:`spanline.sql.templates.render`). The few placeholders that take more (an aggregate
list that depends on a table's columns, a setting's value) say so in their file, and their
callers build them from checked identifiers or quoted literals.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

from spanline.errors import ConfigError
from spanline.sql.templates import identifier, render

STATEMENTS_DIR = Path(__file__).with_name("statements")


@cache
def statement(name: str) -> str:
    """The SQL of ``sql/statements/<name>.sql`` without its leading comment lines, read once."""
    path = STATEMENTS_DIR / f"{identifier(name)}.sql"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise ConfigError(f"no SQL statement {name!r} (expected {path})") from exc
    body = next((i for i, line in enumerate(lines) if line.strip() and not line.startswith("--")), len(lines))
    sql = "\n".join(lines[body:]).strip()
    if not sql:
        raise ConfigError(f"SQL statement file {path.name} has no SQL")
    return sql


def render_statement(name: str, **identifiers: str | Sequence[str]) -> str:
    """Statement ``name`` with each ``${placeholder}`` filled by an identifier, or by a list of
    identifiers joined with commas (a column list); anything else is a ConfigError."""
    values = {
        key: identifier(value) if isinstance(value, str) else identifier_list(value)
        for key, value in identifiers.items()
    }
    return render(statement(name), values)


def identifier_list(names: Sequence[str]) -> str:
    """``names`` as a comma-separated SQL list, each checked by :func:`identifier`."""
    return ", ".join(identifier(name) for name in names)
