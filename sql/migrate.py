"""Ordered, idempotent migrations from ``sql/migrations/NNNN_name.sql``.

Templates use named ``${placeholder}`` fields (string.Template), which cannot collide with
ClickHouse's own ``{name:Type}`` query parameters; every placeholder must be filled, so a
typo fails loudly. Applied migrations are recorded with a checksum of their file, and a
changed file after it was applied is an error: write a new migration instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from string import Template
from typing import Any

from spanline.errors import ConfigError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def ttl_clause(column: str, days: int) -> str:
    """The one place a TTL is built: whole days after the row's time column."""
    if days < 1:
        raise ConfigError(f"TTL must be at least one day, got {days}")
    return f"TTL toDateTime({column}) + INTERVAL {int(days)} DAY"


def template_data(database: str, ttl_days: int) -> dict[str, str]:
    if not _IDENTIFIER.match(database):
        raise ConfigError(f"database name {database!r} must be a plain identifier")
    return {"database": database, "ttl_clause": ttl_clause("start_time", ttl_days)}


def render(sql: str, data: dict[str, str]) -> str:
    try:
        return Template(sql).substitute(data)
    except KeyError as exc:
        raise ConfigError(f"migration uses unknown placeholder ${{{exc.args[0]}}}") from exc


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    files = sorted(directory.glob("*.sql"))
    bad = [f.name for f in files if not _NAME.match(f.name)]
    if bad:
        raise ConfigError(f"migration files must be named NNNN_name.sql: {', '.join(bad)}")
    return [Migration(f.stem, f.read_text()) for f in files]


def split_statements(sql: str) -> list[str]:
    """Split on semicolons outside quotes and comments."""
    statements, current, quote, i = [], [], "", 0
    while i < len(sql):
        char = sql[i]
        if quote:
            current.append(char)
            if char == "\\":
                current.append(sql[i + 1 : i + 2])
                i += 1
            elif char == quote:
                quote = ""
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end
            continue
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = len(sql) if end < 0 else end + 2
            continue
        elif char in "'\"`":
            quote = char
            current.append(char)
        elif char == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def _recorded(client: Any, database: str) -> dict[str, str]:
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(name String, checksum String, applied_at DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY name"
    )
    rows = client.query(f"SELECT name, checksum FROM {database}.schema_migrations").result_rows
    return {name: checksum for name, checksum in rows}


def pending_migrations(client: Any, database: str, migrations: list[Migration] | None = None) -> list[Migration]:
    recorded = _recorded(client, database)
    pending = []
    for migration in migrations or load_migrations():
        checksum = recorded.get(migration.name)
        if checksum is None:
            pending.append(migration)
        elif checksum != migration.checksum:
            raise ConfigError(
                f"migration {migration.name} changed after it was applied; add a new migration instead"
            )
    return pending


def apply_migrations(
    client: Any, database: str, ttl_days: int, migrations: list[Migration] | None = None
) -> list[str]:
    """Apply pending migrations in order; returns the names applied now."""
    data = template_data(database, ttl_days)
    applied = []
    for migration in pending_migrations(client, database, migrations):
        for statement in split_statements(render(migration.sql, data)):
            client.command(statement)
        client.insert(
            f"{database}.schema_migrations",
            [[migration.name, migration.checksum, datetime.now(timezone.utc)]],
            column_names=["name", "checksum", "applied_at"],
        )
        applied.append(migration.name)
    return applied
