"""SQL text handling for migrations: named ``${placeholder}`` rendering and statement splitting.

Why ``${name}`` and nothing else: ClickHouse binds query parameters as ``{name:Type}`` and
uses bare ``$`` in regular expressions and heredocs, so ``str.format`` or the full
``string.Template`` syntax (which also expands ``$name`` and ``$$``) would collide with valid
SQL. Only string.Template's braced form ``${lower_snake}`` is a placeholder here; every other
character passes through untouched, and a placeholder without a value is an error rather
than an empty string.
"""

from __future__ import annotations

import re

from spanline.errors import ConfigError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\$\{([a-z_][a-z0-9_]*)\}")

#: Strings, quoted identifiers and comments (whose semicolons do not end a statement), the
#: statement separator itself, and, last, an opening quote or comment that never closes.
_SQL_TOKEN = re.compile(
    r"""
      (?P<text>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`\\]|\\.|``)*`)
    | (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<end>;)
    | (?P<unclosed>['"`]|/\*)
    """,
    re.VERBOSE | re.DOTALL,
)


def ttl_clause(column: str, days: int) -> str:
    """The one place a TTL is written: rows expire ``days`` whole days after ``column``.

    ``toDateTime`` because a TTL expression must be Date or DateTime, not DateTime64.
    """
    if not _IDENTIFIER.match(column):
        raise ConfigError(f"TTL column {column!r} must be a plain identifier")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ConfigError(f"a TTL must be a whole number of days >= 1, got {days!r}")
    return f"TTL toDateTime({column}) + INTERVAL {days} DAY"


def identifier(name: str) -> str:
    """``name`` if it is safe to paste into SQL unquoted (database and table names)."""
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"{name!r} must be a plain identifier (letters, digits, underscore)")
    return name


def placeholders(sql: str) -> set[str]:
    """Names of the ``${...}`` placeholders used in ``sql``."""
    return set(_PLACEHOLDER.findall(sql))


def render(sql: str, values: dict[str, str]) -> str:
    """Fill every ``${name}``; unknown names and malformed ``${...}`` raise ConfigError."""
    malformed = re.search(r"\$\{[^}\n]*\}?", _PLACEHOLDER.sub("", sql))
    if malformed:
        raise ConfigError(f"malformed placeholder {malformed.group(0)!r}: use ${{lower_snake_case}}")
    missing = placeholders(sql) - values.keys()
    if missing:
        raise ConfigError(f"SQL uses placeholder(s) with no value: {', '.join(sorted(missing))}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], sql)


def split_statements(sql: str) -> list[str]:
    """Split a script on semicolons outside strings, quoted identifiers and comments.

    Comments are dropped (ClickHouse does not keep them) and empty statements skipped.
    """
    statements: list[str] = []
    current: list[str] = []
    position = 0
    for token in _SQL_TOKEN.finditer(sql):
        if token.lastgroup == "unclosed":
            line = sql.count("\n", 0, token.start()) + 1
            raise ConfigError(f"unterminated {token.group(0)!r} starting on line {line}")
        current.append(sql[position : token.start()])
        if token.lastgroup == "text":
            current.append(token.group(0))
        elif token.lastgroup == "end":
            statements.append("".join(current).strip())
            current = []
        position = token.end()
    current.append(sql[position:])
    statements.append("".join(current).strip())
    return [statement for statement in statements if statement]
