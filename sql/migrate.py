"""Ordered, idempotent schema migrations from ``sql/migrations/NNNN_name.sql``.

Each file is a template (see :mod:`spanline.sql.templates`) rendered with the values from
:func:`template_values`, split into statements and run in order; its name and the checksum
of its *unrendered* text are then recorded in ``<database>.schema_migrations``. Settings
such as the TTL therefore do not count as drift, while an edited file does: once applied,
a migration is history, and a change must be a new file. Every statement is written to be
re-runnable (``IF NOT EXISTS``), so a crash between a migration's DDL and its record is
repaired by simply running again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from clickhouse_connect.driver.client import Client

from spanline.errors import ConfigError
from spanline.sql.statements import render_statement
from spanline.sql.templates import identifier, render, split_statements, ttl_clause

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: Days the ingest ledger keeps batch boundaries: far longer than any redelivery window.
LEDGER_TTL_DAYS = 7
_FILE_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")


#: Checksums that databases migrated before a comment-only edit of a migration recorded for it:
#: the statements are the same, so such a database is up to date, not changed.
EARLIER_CHECKSUMS: dict[str, frozenset[str]] = {
    "0003_rollups": frozenset({"0d00bd55cbf8e4d71530be0ce1627b3034a53cd36c9b3130a47153f823067a18"}),
    "0005_alerts": frozenset({"79967e7f817e90c773112184c1bf1f41e8a0b90ca1a4e066c6e17e600e5c7348"}),
}


@dataclass(frozen=True)
class Migration:
    """One migration file: its name (file stem) and unrendered text."""

    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def template_values(database: str, ttl_days: int) -> dict[str, str]:
    """Every placeholder a migration may use, and its value."""
    return {
        "database": identifier(database),
        "spans_ttl": ttl_clause("start_time", ttl_days),
        "ledger_ttl": ttl_clause("created_at", LEDGER_TTL_DAYS),
    }


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migration files in name order; a misnamed or duplicate-numbered file is an error."""
    files = sorted(directory.glob("*.sql"))
    misnamed = [path.name for path in files if not _FILE_NAME.match(path.name)]
    if misnamed:
        raise ConfigError(f"migration files must be named NNNN_name.sql: {', '.join(misnamed)}")
    numbers = [path.name[:4] for path in files]
    duplicated = sorted({number for number in numbers if numbers.count(number) > 1})
    if duplicated:
        raise ConfigError(f"two migration files share the number(s) {', '.join(duplicated)}")
    return [Migration(path.stem, path.read_text(encoding="utf-8")) for path in files]


def pending_migrations(client: Client, database: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Migrations not applied yet, in order; read-only. An edited applied file raises ConfigError."""
    applied = _applied_checksums(client, identifier(database))
    migrations = load_migrations(directory)
    changed = [
        m.name
        for m in migrations
        if m.name in applied and applied[m.name] not in {m.checksum, *EARLIER_CHECKSUMS.get(m.name, ())}
    ]
    if changed:
        raise ConfigError(
            f"migration(s) {', '.join(changed)} changed after being applied to database {database!r}; "
            "restore the original file(s) and put the change in a new migration"
        )
    return [m for m in migrations if m.name not in applied]


def apply_migrations(client: Client, database: str, ttl_days: int, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Create ``database`` and apply pending migrations in order; returns the names applied now."""
    values = template_values(database, ttl_days)
    client.command(render_statement("migrate_create_database", database=values["database"]))
    client.command(render_statement("migrate_create_history", database=values["database"]))
    applied: list[str] = []
    for migration in pending_migrations(client, database, directory):
        for statement in split_statements(render(migration.sql, values)):
            client.command(statement)
        # The token makes a concurrent runner's record of the same migration a no-op.
        client.insert(
            f"{values['database']}.schema_migrations",
            [[migration.name, migration.checksum, datetime.now(UTC)]],
            column_names=["name", "checksum", "applied_at"],
            settings={"insert_deduplication_token": f"{migration.name}:{migration.checksum}", "async_insert": 0},
        )
        applied.append(migration.name)
    return applied


def _applied_checksums(client: Client, database: str) -> dict[str, str]:
    if not client.command(render_statement("migrate_history_exists", database=database)):
        return {}
    rows = client.query(render_statement("migrate_applied", database=database)).result_rows
    return {name: checksum for name, checksum in rows}
