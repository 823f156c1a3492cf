"""The cluster variant of the migrations (`spanline migrate --cluster NAME --print`).

Every rendered statement is parsed by ClickHouse (chDB's ``formatQuery``), and each
replicated local table is checked to be the single-node table with only its name, engine and
``ON CLUSTER`` changed: columns, codecs, partitioning, ORDER BY, TTL and settings come through
untouched. The rendering is a generic transformation, checked on a migration it has never seen.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from spanline.errors import ConfigError
from spanline.sql.client import connect
from spanline.sql.cluster import cluster_statements
from spanline.sql.migrate import Migration, load_migrations, template_values
from spanline.sql.templates import render, split_statements

DB = "spanline"
CLUSTER = "analytics"


@pytest.fixture(scope="module")
def chdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    client = connect(f"chdb://{tmp_path_factory.mktemp('cluster-ddl') / 'chdb'}")
    yield client
    client.close()


def formatted(client: Client, sql: str) -> str:
    return str(client.query("SELECT formatQuery({sql:String})", parameters={"sql": sql}).result_rows[0][0])


def single_node_statements() -> list[str]:
    values = template_values(DB, 30)
    return [s for m in load_migrations() for s in split_statements(render(m.sql, values))]


def created_name(statement: str) -> str:
    """The object a statement creates or drops (DROP VIEW IF EXISTS)."""
    match = re.search(r"IF (?:NOT )?EXISTS (\S+)", statement)
    assert match, statement
    return match.group(1)


@pytest.fixture(scope="module")
def rendered() -> list[str]:
    return cluster_statements(load_migrations(), DB, 30, CLUSTER)


def test_every_rendered_statement_parses_and_runs_on_the_cluster(chdb: Client, rendered: list[str]) -> None:
    for statement in rendered:
        text = formatted(chdb, statement)
        assert f"ON CLUSTER {CLUSTER}" in text, statement


def test_every_single_node_object_exists_on_the_cluster_under_its_name(rendered: list[str]) -> None:
    single = [created_name(s) for s in single_node_statements()]
    clustered = [created_name(s) for s in rendered[1:]]
    assert rendered[0] == f"CREATE DATABASE IF NOT EXISTS {DB} ON CLUSTER {CLUSTER}"
    assert set(single) <= set(clustered)
    tables = [
        s
        for s in single_node_statements()
        if s.startswith("CREATE TABLE") or (s.startswith("ALTER TABLE") and "ADD COLUMN" in s)
    ]
    # + one local table per table, and each column added to both the local and the Distributed table
    assert len(rendered) == 1 + len(single_node_statements()) + len(tables)


def test_local_tables_are_the_single_node_tables_replicated(chdb: Client, rendered: list[str]) -> None:
    by_name = {created_name(s): s for s in rendered}
    tables = [s for s in single_node_statements() if s.startswith("CREATE TABLE")]
    assert tables, "the migrations define tables"
    for original in tables:
        name = created_name(original)
        local = by_name[f"{name}_local"]
        engine = re.search(r"ENGINE = (\w*)MergeTree\b", original).group(1)  # type: ignore[union-attr]
        path = f"'/clickhouse/tables/{{shard}}/{name.replace('.', '/')}_local', '{{replica}}'"
        assert f"ENGINE = Replicated{engine}MergeTree({path})" in local
        # Undo exactly the three intended changes: what remains must equal the single-node DDL.
        undone = local.replace(f"{name}_local ON CLUSTER {CLUSTER}", name).replace(
            f"Replicated{engine}MergeTree({path})", f"{engine}MergeTree"
        )
        assert formatted(chdb, undone) == formatted(chdb, original)
        distributed = formatted(chdb, by_name[name])
        assert f"AS {name}_local" in distributed
        assert re.search(
            rf"ENGINE = Distributed\({CLUSTER}, {DB}, {name.split('.')[1]}_local, cityHash64\(\w+\)\)", distributed
        ), distributed


def test_materialized_views_read_and_write_local_tables(chdb: Client, rendered: list[str]) -> None:
    views = [s for s in rendered if s.startswith("CREATE MATERIALIZED VIEW")]
    assert views
    for view in views:
        text = formatted(chdb, view)
        targets = re.findall(rf"(?:TO|FROM|JOIN) ({DB}\.\w+)", text)
        assert targets and all(t.endswith("_local") for t in targets), text


def test_plain_views_read_the_distributed_tables(chdb: Client, rendered: list[str]) -> None:
    views = [s for s in rendered if s.startswith("CREATE VIEW")]
    assert views
    for view in views:
        assert "_local" not in view
        formatted(chdb, view)


def test_the_rendering_is_generic_and_refuses_what_it_cannot_render(chdb: Client) -> None:
    extra = Migration(
        "0099_events",
        """
        CREATE TABLE IF NOT EXISTS ${database}.events (at DateTime, n UInt64, k String)
        ENGINE = SummingMergeTree ORDER BY (toStartOfHour(at), k);
        CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.events_mv TO ${database}.events AS
        SELECT start_time AS at, count() AS n, tenant_id AS k FROM ${database}.spans GROUP BY at, k;
    """,
    )
    statements = cluster_statements([*load_migrations()[:1], extra], DB, 30, CLUSTER)
    text = "\n".join(formatted(chdb, s) for s in statements)
    assert (
        "ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/spanline/events_local', '{replica}')" in text
    )
    assert "cityHash64(toStartOfHour(at))" in text
    assert f"TO {DB}.events_local" in text and f"FROM {DB}.spans_local" in text
    with pytest.raises(ConfigError, match="0100_alter: no cluster rendering"):
        cluster_statements(
            [Migration("0100_alter", "ALTER TABLE ${database}.spans ADD COLUMN x UInt8")], DB, 30, CLUSTER
        )
    with pytest.raises(ConfigError, match="not a \\*MergeTree"):
        cluster_statements(
            [Migration("0101_mem", "CREATE TABLE IF NOT EXISTS ${database}.m (x UInt8) ENGINE = Memory")],
            DB,
            30,
            CLUSTER,
        )
    with pytest.raises(ConfigError, match="plain identifier"):
        cluster_statements(load_migrations(), DB, 30, "bad name; DROP")


def test_the_cli_prints_the_cluster_ddl_and_does_not_apply_it(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "SPANLINE_HOME": str(tmp_path)}
    printed = subprocess.run(
        [sys.executable, "-m", "spanline", "migrate", "--cluster", CLUSTER, "--print"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert printed.returncode == 0, printed.stderr
    expected = cluster_statements(load_migrations(), DB, 30, CLUSTER)
    assert [s.strip() for s in printed.stdout.split(";\n") if s.strip()] == expected
    refused = subprocess.run(
        [sys.executable, "-m", "spanline", "migrate", "--cluster", CLUSTER],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "--print" in refused.stdout
    assert not (tmp_path / "clickhouse").exists()
