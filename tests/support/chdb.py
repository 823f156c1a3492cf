"""A migrated chDB client for the tests that read and write ClickHouse in-process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clickhouse_connect.driver.client import Client

from spanline.sql.client import connect
from spanline.sql.migrate import apply_migrations


@contextmanager
def migrated_chdb(path: Path, database: str, ttl_days: int = 30) -> Iterator[Client]:
    """A chDB client at ``path`` with every migration applied to ``database``, closed on exit.

    Closing matters: one process opens one chDB data path at a time (docs/architecture.md), so
    the next module's client, or a CLI process opening this path, needs it released.
    """
    client = connect(f"chdb://{path}")
    try:
        apply_migrations(client, database, ttl_days=ttl_days)
        yield client
    finally:
        client.close()
