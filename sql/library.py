"""The library of named, parameterised analysis queries in ``sql/queries/*.sql`` (docs/requirements.md §6).

Each file starts with a header the library reads, so the SQL documents itself::

    -- name: spend_by_day                      (must equal the file name)
    -- question: what it answers (continuation lines are indented comments)
    -- param: since DateTime64(3, 'UTC')
    -- param: tenant String = ''               (a default makes the parameter optional)

The body references the database as ``${database}`` (filled by :func:`render`) and takes
values only through ClickHouse's server-side binding ``{name:Type}``, never string
formatting, so a parameter can never change the query's shape. Every query takes the
window ``since``/``until`` (default: the 24 hours ending now, or ending at ``until``) and a
tenant scope ``tenant`` ('' = all tenants).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from spanline.errors import ConfigError
from spanline.sql.templates import identifier, placeholders, render

QUERIES_DIR = Path(__file__).with_name("queries")
#: Parameters every query declares: the time window and the tenant scope.
REQUIRED_PARAMS = ("since", "until", "tenant")
DEFAULT_WINDOW = timedelta(hours=24)

_HEADER_LINE = re.compile(r"^--\s?(?P<key>name|question|param):\s*(?P<value>.*)$")
_CONTINUATION = re.compile(r"^--\s{2,}(?P<value>\S.*)$")
_PARAM = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)\s+(?P<type>[A-Za-z0-9_]+(?:\([^)]*\))?)(?:\s*=\s*(?P<default>.*))?$")
_BINDING = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}")
_STRING_DEFAULT = re.compile(r"^'(?P<text>(?:[^'\\]|\\.)*)'$")
_INTEGER_TYPES = re.compile(r"^U?Int(8|16|32|64)$")


@dataclass(frozen=True)
class Param:
    """A query parameter's ClickHouse type and its default as written in the header (None = required)."""

    type: str
    default: str | None = None


@dataclass(frozen=True)
class NamedQuery:
    """One library query: the header's name, question and parameters, and the SQL body."""

    name: str
    question: str
    params: dict[str, Param]
    sql: str

    def render(self, database: str) -> str:
        """The SQL for ``database``; parameters stay ``{name:Type}`` for the server to bind."""
        return render(self.sql, {"database": identifier(database)})

    def bind(self, raw: dict[str, str], now: datetime | None = None) -> dict[str, object]:
        """Typed values for every parameter from CLI strings (``--param k=v``), defaults filled.

        ``now`` pins the clock the default window ends at (tests, reproducible reports).
        """
        unknown = sorted(raw.keys() - self.params.keys())
        if unknown:
            raise ConfigError(f"query {self.name!r} has no parameter(s) {', '.join(unknown)}; {self._usage()}")
        values: dict[str, object] = {}
        for name, param in self.params.items():
            if name in raw:
                values[name] = _convert(f"query {self.name!r}", name, param.type, raw[name])
            elif param.default is not None:
                values[name] = _convert(f"query {self.name!r}", name, param.type, _unquote(param.default))
        values.update(self._window(values, now or datetime.now(UTC)))
        missing = [name for name in self.params if name not in values]
        if missing:
            raise ConfigError(f"query {self.name!r} needs parameter(s) {', '.join(missing)}; {self._usage()}")
        return values

    def _window(self, values: dict[str, object], now: datetime) -> dict[str, datetime]:
        """since/until with the default 24-hour window filled in around whichever was given."""
        until = values.get("until")
        until = until if isinstance(until, datetime) else now
        since = values.get("since")
        since = since if isinstance(since, datetime) else until - DEFAULT_WINDOW
        if since >= until:
            raise ConfigError(f"query {self.name!r}: since ({since.isoformat()}) must be before until")
        return {"since": since, "until": until}

    def _usage(self) -> str:
        described = [
            f"{name} {param.type}" + ("" if param.default is None else f" = {param.default}")
            for name, param in self.params.items()
        ]
        return f"its parameters are: {', '.join(described)}"


def load_library(directory: Path = QUERIES_DIR) -> dict[str, NamedQuery]:
    """Every query in ``directory`` by name; a file with a bad header or binding is a ConfigError."""
    queries = [parse_query(path.stem, path.read_text(encoding="utf-8")) for path in sorted(directory.glob("*.sql"))]
    return {query.name: query for query in queries}


def parse_query(file_stem: str, text: str) -> NamedQuery:
    """Read a query file's header and check it against the body's bindings."""
    header: dict[str, list[str]] = {"name": [], "question": [], "param": []}
    lines = text.splitlines()
    body = next((i for i, line in enumerate(lines) if line.strip() and not line.startswith("--")), len(lines))
    last_key = ""
    for line in lines[:body]:
        match = _HEADER_LINE.match(line)
        continuation = _CONTINUATION.match(line)
        if match:
            last_key = match.group("key")
            header[last_key].append(match.group("value").strip())
        elif continuation and last_key == "question":
            header["question"][-1] += " " + continuation.group("value").strip()
    sql = "\n".join(lines[body:]).strip()
    where = f"query file {file_stem}.sql"
    if header["name"] != [file_stem]:
        raise ConfigError(f"{where} must start with '-- name: {file_stem}'")
    if len(header["question"]) != 1 or not header["question"][0]:
        raise ConfigError(f"{where} needs one '-- question:' line saying what it answers")
    if not sql:
        raise ConfigError(f"{where} has a header but no SQL")
    params = _parse_params(where, header["param"])
    _check_bindings(where, sql, params)
    return NamedQuery(file_stem, header["question"][0], params, sql)


def _parse_params(where: str, declared: list[str]) -> dict[str, Param]:
    params: dict[str, Param] = {}
    for text in declared:
        match = _PARAM.match(text)
        if match is None:
            raise ConfigError(f"{where}: bad parameter line {text!r}; write '-- param: name Type [= default]'")
        name = match.group("name")
        if name in params:
            raise ConfigError(f"{where} declares parameter {name!r} twice")
        params[name] = Param(match.group("type"), match.group("default"))
        if params[name].default is not None:
            _convert(where, name, params[name].type, _unquote(params[name].default or ""))
    absent = [name for name in REQUIRED_PARAMS if name not in params]
    if absent:
        raise ConfigError(f"{where} must declare the parameter(s) {', '.join(absent)}")
    return params


def _check_bindings(where: str, sql: str, params: dict[str, Param]) -> None:
    """Every ``{name:Type}`` is declared with that type, every parameter is used, and the only
    template placeholder is ``${database}``."""
    extra = placeholders(sql) - {"database"}
    if extra:
        raise ConfigError(f"{where} uses placeholder(s) {', '.join(sorted(extra))}; only ${{database}} is filled")
    used: set[str] = set()
    for name, type_ in _BINDING.findall(sql):
        param = params.get(name)
        if param is None or _normal(param.type) != _normal(type_):
            raise ConfigError(
                f"{where} binds {{{name}:{type_}}} but declares {name} as {param.type if param else None}"
            )
        used.add(name)
    unused = sorted(params.keys() - used)
    if unused:
        raise ConfigError(f"{where} declares parameter(s) it never uses: {', '.join(unused)}")


def _normal(type_: str) -> str:
    return re.sub(r"\s+", "", type_)


def _unquote(default: str) -> str:
    """A header default as the CLI would pass it: SQL string literals lose their quotes."""
    match = _STRING_DEFAULT.match(default.strip())
    return match.group("text").replace("\\'", "'") if match else default.strip()


def _convert(where: str, name: str, type_: str, raw: str) -> object:
    """One CLI string as the Python value clickhouse-connect binds for ``type_``."""
    try:
        if type_ == "String":
            return raw
        if type_.startswith("DateTime"):
            moment = datetime.fromisoformat(raw.strip())
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        if _INTEGER_TYPES.match(type_):
            number = int(raw)
            if type_.startswith("U") and number < 0:
                raise ValueError("must not be negative")
            return number
        if type_.startswith("Float"):
            return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: parameter {name} = {raw!r} is not a valid {type_} ({exc})") from exc
    raise ConfigError(f"{where}: parameter {name} has the unsupported type {type_}")
