"""Grafana + grafana-clickhouse-datasource query expansion, reimplemented so queries can run
without Grafana (panel tests on chDB, the static report).

A panel's ``rawSql`` goes through three steps before ClickHouse sees it, in this order:

1. ``$__conditionalAll(condition, $var)`` (plugin frontend, ``applyConditionalAll``): the
   condition, or ``1=1`` when the variable's current value is All (``$__all``) or empty;
   macros are found right to left, arguments split at top-level commas.
2. Template variables (Grafana's ``templateSrv.replace`` with the plugin's ``format``):
   ``$var``, ``${var}`` and ``${var:singlequote}``. A multi-value (array) value becomes
   ``'a','b'`` by the plugin's formatter; ``singlequote`` quotes each value and escapes ``'``
   as ``\\'``; a single value without a format is pasted as is. All without a custom
   ``allValue`` stands for every option of the variable.
3. Backend macros (plugin ``pkg/macros`` run by grafana/sqlds): a name matches
   ``\\$__name\\b`` (so ``$__timeFilter`` never eats ``$__timeFilter_ms``), arguments are an
   optional bracketed list split at top-level commas and trimmed.

   - ``$__timeFilter(c)``   -> ``c >= toDateTime(from_s) AND c <= toDateTime(to_s)`` (both ends inclusive)
   - ``$__timeFilter_ms(c)``-> the same with ``fromUnixTimestamp64Milli(ms)``
   - ``$__dateFilter(c)``   -> ``c >= toDate('YYYY-MM-DD') AND c <= toDate('YYYY-MM-DD')``
   - ``$__fromTime`` / ``$__toTime`` -> ``toDateTime(s)``; ``_ms`` variants -> ``fromUnixTimestamp64Milli(ms)``
   - ``$__timeInterval(c)`` -> ``toStartOfInterval(toDateTime(c), INTERVAL n second)``, n = max(interval_s, 1)
   - ``$__timeInterval_ms(c)`` -> ``toStartOfInterval(toDateTime64(c, 3), INTERVAL n millisecond)``
   - ``$__interval_s`` -> n
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from spanline.errors import ConfigError

ALL = "$__all"
_CONDITIONAL_ALL = "$__conditionalAll("
_VARIABLE_IN_ARG = re.compile(r"(?<=\$\{)[\w\d]+(?=\})|(?<=\$)[\w\d]+")
#: Grafana's variable syntaxes that Spanline's panels use: ${name:format}, ${name}, $name.
_TEMPLATE_VARIABLE = re.compile(r"\$\{(?P<braced>\w+)(?::(?P<format>\w+))?\}|\$(?P<bare>[A-Za-z]\w*)")


@dataclass(frozen=True)
class Variable:
    """A dashboard variable's current selection: one value, several (multi) or All."""

    name: str
    current: str | list[str]
    options: list[str] = field(default_factory=list)  # every value All stands for

    @property
    def is_all(self) -> bool:
        value = self.current
        return (value if isinstance(value, str) else ",".join(value)) in ("", ALL)

    def values(self) -> str | list[str]:
        """What Grafana interpolates: the selection, or every option for All."""
        if self.is_all:
            return list(self.options)
        return self.current


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range and the query interval Grafana computed for the panel."""

    start: datetime
    end: datetime
    interval: timedelta = timedelta(minutes=1)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ConfigError("a time range needs timezone-aware datetimes")
        if self.start >= self.end:
            raise ConfigError(f"time range start {self.start} must be before its end {self.end}")


def expand(sql: str, time_range: TimeRange, variables: Sequence[Variable] = ()) -> str:
    """``sql`` as grafana-clickhouse-datasource would send it to ClickHouse."""
    by_name = {variable.name: variable for variable in variables}
    sql = apply_conditional_all(sql, by_name)
    sql = replace_variables(sql, by_name)
    return apply_macros(sql, time_range)


def apply_conditional_all(sql: str, variables: dict[str, Variable]) -> str:
    """Step 1: ``$__conditionalAll(condition, $var)`` -> condition, or 1=1 for All/empty."""
    index = sql.rfind(_CONDITIONAL_ALL)
    while index != -1:
        args, end = _bracketed_args(sql, index + len(_CONDITIONAL_ALL) - 1, trim=False)
        if len(args) != 2:
            raise ConfigError(f"$__conditionalAll takes (condition, $variable), got {len(args)} argument(s)")
        phrase = args[0]
        named = _VARIABLE_IN_ARG.search(args[1].strip())
        if named and named.group(0) in variables and variables[named.group(0)].is_all:
            phrase = "1=1"
        sql = sql[:index] + phrase + sql[end:]
        index = sql.rfind(_CONDITIONAL_ALL)
    return sql


def replace_variables(sql: str, variables: dict[str, Variable]) -> str:
    """Step 2: template variables; unknown names stay as written (Grafana leaves them too)."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        if name.startswith("__") or name not in variables:
            return match.group(0)
        return _format(variables[name].values(), match.group("format"))

    return _TEMPLATE_VARIABLE.sub(substitute, sql)


def _format(value: str | list[str], fmt: str | None) -> str:
    if fmt == "singlequote":
        values = [value] if isinstance(value, str) else value
        return ",".join("'" + item.replace("'", "\\'") + "'" for item in values)
    if fmt is not None:
        raise ConfigError(f"variable format {fmt!r} is not one Spanline's panels use (singlequote)")
    if isinstance(value, list):  # the plugin's own formatter for multi-value variables
        return "'" + "','".join(value) + "'"
    return value


def _to_datetime(moment: datetime) -> str:
    return f"toDateTime({math.floor(moment.timestamp())})"


def _to_datetime64(moment: datetime) -> str:
    return f"fromUnixTimestamp64Milli({math.floor(moment.timestamp() * 1000)})"


def _to_date(moment: datetime) -> str:
    return f"toDate('{moment.astimezone(UTC):%Y-%m-%d}')"


def _one_column(name: str, args: list[str] | None) -> str:
    if args is None or len(args) != 1:
        raise ConfigError(f"$__{name} expects 1 argument, received {0 if args is None else len(args)}")
    return args[0]


def _range_filter(convert: Callable[[datetime], str]) -> Callable[[TimeRange, list[str] | None, str], str]:
    def macro(time_range: TimeRange, args: list[str] | None, name: str) -> str:
        column = _one_column(name, args)
        return f"{column} >= {convert(time_range.start)} AND {column} <= {convert(time_range.end)}"

    return macro


def _seconds(time_range: TimeRange) -> int:
    return int(max(time_range.interval.total_seconds(), 1))


_MACROS: dict[str, Callable[[TimeRange, list[str] | None, str], str]] = {
    "fromTime": lambda r, a, n: _to_datetime(r.start),
    "toTime": lambda r, a, n: _to_datetime(r.end),
    "fromTime_ms": lambda r, a, n: _to_datetime64(r.start),
    "toTime_ms": lambda r, a, n: _to_datetime64(r.end),
    "timeFilter": _range_filter(_to_datetime),
    "timeFilter_ms": _range_filter(_to_datetime64),
    "dateFilter": _range_filter(_to_date),
    "timeInterval": lambda r, a, n: (
        f"toStartOfInterval(toDateTime({_one_column(n, a)}), INTERVAL {_seconds(r)} second)"
    ),
    "timeInterval_ms": lambda r, a, n: (
        f"toStartOfInterval(toDateTime64({_one_column(n, a)}, 3), "
        f"INTERVAL {int(max(r.interval.total_seconds() * 1000, 1))} millisecond)"
    ),
    "interval_s": lambda r, a, n: str(_seconds(r)),
}
_MACRO_NAME = re.compile(r"\$__(?P<name>[A-Za-z_]\w*)\b")


def apply_macros(sql: str, time_range: TimeRange) -> str:
    """Step 3: the backend's time macros; an unknown ``$__name`` is an error, not silence."""
    out: list[str] = []
    position = 0
    for match in _MACRO_NAME.finditer(sql):
        if match.start() < position:
            continue  # inside the arguments of a macro already expanded
        name = match.group("name")
        if name not in _MACROS:
            raise ConfigError(f"unknown macro $__{name} (supported: {', '.join(sorted(_MACROS))})")
        args, end = (None, match.end())
        if sql.startswith("(", match.end()):
            args, end = _bracketed_args(sql, match.end())
        out.append(sql[position : match.start()])
        out.append(_MACROS[name](time_range, args, name))
        position = end
    out.append(sql[position:])
    return "".join(out)


def _bracketed_args(sql: str, open_at: int, trim: bool = True) -> tuple[list[str], int]:
    """Top-level comma-separated arguments of the bracket at ``open_at`` (trimmed, as sqlds does;
    untrimmed, as the frontend's conditionalAll does) and the index after its closing bracket."""

    def cut(text: str) -> str:
        return text.strip() if trim else text

    depth, start, args = 0, open_at + 1, []
    for index in range(open_at, len(sql)):
        char = sql[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                args.append(cut(sql[start:index]))
                return args, index + 1
        elif char == "," and depth == 1:
            args.append(cut(sql[start:index]))
            start = index + 1
    raise ConfigError(f"macro arguments starting at {sql[open_at : open_at + 40]!r} have no closing bracket")
