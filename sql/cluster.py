"""The cluster variant of the migrations, derived from the same templates (`spanline migrate --cluster`).

Single-node DDL becomes the usual ClickHouse cluster layout, statement by statement:

* ``CREATE TABLE db.t (...) ENGINE = XMergeTree ...`` → ``db.t_local ON CLUSTER c`` with
  ``ReplicatedXMergeTree('/clickhouse/tables/{shard}/db/t_local', '{replica}')`` (each shard's
  replicas share the data), plus ``db.t ON CLUSTER c AS db.t_local ENGINE = Distributed(...)``
  under the original name, so every reader and writer keeps using ``db.t``. The sharding key
  hashes the first ORDER BY column: deterministic, so a retried insert lands on the same shard
  and its ``insert_deduplication_token`` still deduplicates it, and for ``spans`` and the rollups
  (ORDER BY tenant_id, ...) a tenant's rows stay on one shard.
* A materialized view reads and writes the *local* tables: each shard aggregates the rows it
  received, and reads through the Distributed rollup merge the shards' partial states.
* A plain view, ``CREATE DATABASE`` and ``DROP VIEW IF EXISTS`` only gain ``ON CLUSTER``.
* ``ALTER TABLE db.t ADD COLUMN IF NOT EXISTS ...`` on a replicated table runs on both the local
  and the Distributed table, each ``ON CLUSTER``.

Any other statement shape is refused, so a new migration cannot silently render wrong.
"""

from __future__ import annotations

import re

from spanline.errors import ConfigError
from spanline.sql.migrate import Migration, template_values
from spanline.sql.templates import identifier, render, split_statements

LOCAL_SUFFIX = "_local"

_NAME = r"(?P<db>[A-Za-z_][A-Za-z0-9_]*)\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
_CREATE_TABLE = re.compile(rf"^CREATE TABLE IF NOT EXISTS {_NAME}\s*\(", re.IGNORECASE)
_ENGINE = re.compile(r"\bENGINE\s*=\s*(?P<family>[A-Za-z]*)MergeTree\b(?:\s*\(\s*\))?", re.IGNORECASE)
_ORDER_BY = re.compile(r"\bORDER BY\s+(?:\(\s*)?(?P<first>[^,()\s]+(?:\([^()]*\))?)", re.IGNORECASE)
_CREATE_MV = re.compile(rf"^CREATE MATERIALIZED VIEW IF NOT EXISTS {_NAME}\s+TO\s+", re.IGNORECASE)
_CREATE_VIEW = re.compile(rf"^CREATE VIEW IF NOT EXISTS {_NAME}\s+AS\b", re.IGNORECASE)
_ADD_COLUMN = re.compile(rf"^ALTER TABLE {_NAME}\s+(?=ADD COLUMN IF NOT EXISTS\b)", re.IGNORECASE)
_DROP_VIEW = re.compile(rf"^DROP VIEW IF EXISTS {_NAME}\s*$", re.IGNORECASE)


def cluster_statements(migrations: list[Migration], database: str, ttl_days: int, cluster: str) -> list[str]:
    """Every statement of ``migrations`` rendered for ``cluster``, in order, database first."""
    values = template_values(database, ttl_days)
    cluster = identifier(cluster)
    statements = [f"CREATE DATABASE IF NOT EXISTS {values['database']} ON CLUSTER {cluster}"]
    local_tables: set[str] = set()
    for migration in migrations:
        for statement in split_statements(render(migration.sql, values)):
            try:
                statements += _cluster_statement(statement, cluster, local_tables)
            except ConfigError as exc:
                raise ConfigError(f"migration {migration.name}: {exc}") from exc
    return statements


def _cluster_statement(statement: str, cluster: str, local_tables: set[str]) -> list[str]:
    table = _CREATE_TABLE.match(statement)
    if table:
        return _replicated_and_distributed(statement, table, cluster, local_tables)
    view = _CREATE_MV.match(statement)
    if view:
        body = _to_local(statement[view.end() :], local_tables)
        return [f"{_head(view, 'CREATE MATERIALIZED VIEW IF NOT EXISTS', cluster)} TO {body}"]
    view = _CREATE_VIEW.match(statement)
    if view:
        return [f"{_head(view, 'CREATE VIEW IF NOT EXISTS', cluster)} AS{statement[view.end() :]}"]
    drop = _DROP_VIEW.match(statement)
    if drop:
        return [f"{_head(drop, 'DROP VIEW IF EXISTS', cluster)}"]
    alter = _ADD_COLUMN.match(statement)
    if alter and f"{alter['db']}.{alter['name']}" in local_tables:
        change = statement[alter.end() :]
        return [
            f"ALTER TABLE {alter['db']}.{alter['name']}{LOCAL_SUFFIX} ON CLUSTER {cluster} {change}",
            f"ALTER TABLE {alter['db']}.{alter['name']} ON CLUSTER {cluster} {change}",
        ]
    first_line = statement.splitlines()[0]
    raise ConfigError(f"no cluster rendering for the statement starting {first_line!r}")


def _head(match: re.Match[str], create: str, cluster: str) -> str:
    return f"{create} {match['db']}.{match['name']} ON CLUSTER {cluster}"


def _replicated_and_distributed(
    statement: str, table: re.Match[str], cluster: str, local_tables: set[str]
) -> list[str]:
    database, name = table["db"], table["name"]
    local = f"{name}{LOCAL_SUFFIX}"
    engine = _ENGINE.search(statement)
    if engine is None:
        raise ConfigError(f"table {database}.{name} is not a *MergeTree table; add its cluster rendering")
    order_by = _ORDER_BY.search(statement, engine.end())
    if order_by is None:
        raise ConfigError(f"table {database}.{name} has no ORDER BY to derive a sharding key from")
    replicated = (
        f"ENGINE = Replicated{engine['family']}MergeTree("
        f"'/clickhouse/tables/{{shard}}/{database}/{local}', '{{replica}}')"
    )
    body = statement[table.end() - 1 : engine.start()] + replicated + statement[engine.end() :]
    local_tables.add(f"{database}.{name}")
    return [
        f"CREATE TABLE IF NOT EXISTS {database}.{local} ON CLUSTER {cluster}\n{body}",
        f"CREATE TABLE IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} AS {database}.{local}\n"
        f"ENGINE = Distributed({cluster}, {database}, {local}, cityHash64({order_by['first']}))",
    ]


def _to_local(sql: str, local_tables: set[str]) -> str:
    """``sql`` with every reference to a replicated table pointed at its local table."""
    if not local_tables:
        return sql
    names = "|".join(re.escape(table) for table in sorted(local_tables, key=len, reverse=True))
    return re.sub(rf"\b({names})\b(?!{LOCAL_SUFFIX})", rf"\1{LOCAL_SUFFIX}", sql)
