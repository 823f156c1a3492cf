"""Read-side tenant isolation and parameter binding, on chDB with the real migrations.

`spanline sql query|run --tenant X` must show tenant X's rows and nothing else, whatever the SQL
tries: a SETTINGS clause, SET, subqueries, CTEs, joins, unions, views, rollups, materialized
views, table functions, system tables, other databases, unscoped Spanline tables, dictionary
lookups, writes. Each attempt either returns only X's rows or is refused with a clear error.
Values are bound by ClickHouse, so an injection attempt in a parameter is just a string.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from spanline.analysis import run_named
from spanline.errors import ConfigError, SpanlineError
from spanline.settings import Settings, load_settings
from spanline.sql.queries import read_only_query, run_query
from spanline.sql.tenant_scope import ScopeError, filter_setting
from spanline.windows.aggregate import ROW_COLUMNS
from tests.support.chdb import migrated_chdb
from tests.support.stored_spans import insert_rollup

DB = "spanline_sec"
#: Spans per tenant; every count below is checked against these.
SPANS = {"acme": 3, "globex": 5}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("security-sql")
    url = f"chdb://{home / 'chdb'}"
    with migrated_chdb(home / "chdb", DB) as client:  # open while the tests run
        rows = [
            (tenant, "svc", f"{tenant}-{n}", f"span-{tenant}-{n}", "llm", 0.5)
            for tenant, count in SPANS.items()
            for n in range(count)
        ]
        values = ", ".join(
            f"('{t}', '{s}', now64(3), now64(3), '{trace}', '{span}', '{k}', 'openai', 'gpt-4o', {c})"
            for t, s, trace, span, k, c in rows
        )
        client.command(
            f"INSERT INTO {DB}.spans (tenant_id, service, start_time, end_time, trace_id, span_id, kind, provider, model_requested, cost_usd) "
            f"VALUES {values}"
        )
        stored = client.query_df(f"SELECT {', '.join(ROW_COLUMNS)} FROM {DB}.spans")
        insert_rollup(client, DB, stored, "security-seed")  # the worker writes the rollups
        client.command(f"CREATE DATABASE IF NOT EXISTS {DB}_other")
        client.command(f"CREATE TABLE IF NOT EXISTS {DB}_other.secrets (tenant_id String, v String) ENGINE = Memory")
        client.command(f"INSERT INTO {DB}_other.secrets VALUES ('globex', 'hidden')")
        yield load_settings(
            {"SPANLINE_HOME": str(home), "SPANLINE_CLICKHOUSE_URL": url, "SPANLINE_CLICKHOUSE_DATABASE": DB}
        )


def scoped(settings: Settings, sql: str, tenant: str = "acme", **parameters: object) -> list[list[object]]:
    return read_only_query(settings, sql.replace("{db}", DB), parameters or None, tenant).rows


def tenants_seen(settings: Settings, sql: str, tenant: str = "acme") -> set[object]:
    return {row[0] for row in scoped(settings, sql, tenant)}


def test_unscoped_queries_see_every_tenant(settings: Settings) -> None:
    rows = run_query(settings, f"SELECT tenant_id, count() FROM {DB}.spans GROUP BY tenant_id ORDER BY tenant_id").rows
    assert rows == [["acme", 3], ["globex", 5]]


@pytest.mark.parametrize("tenant", sorted(SPANS))
def test_a_scoped_query_sees_only_its_tenant(settings: Settings, tenant: str) -> None:
    assert scoped(settings, "SELECT tenant_id, count() FROM {db}.spans GROUP BY tenant_id", tenant) == [
        [tenant, SPANS[tenant]]
    ]
    assert scoped(settings, "SELECT count() FROM spans", tenant) == [[SPANS[tenant]]]  # the default database


#: SQL that tries to reach other tenants' rows but stays inside the scope: only acme comes back.
CONTAINED = {
    "where": "SELECT tenant_id FROM {db}.spans WHERE tenant_id = 'globex' OR 1 = 1",
    "subquery": "SELECT tenant_id FROM (SELECT * FROM {db}.spans)",
    "subquery settings": "SELECT tenant_id FROM (SELECT * FROM {db}.spans SETTINGS additional_table_filters = {})",
    "cte": "WITH everything AS (SELECT * FROM {db}.spans) SELECT tenant_id FROM everything",
    "union": "SELECT tenant_id FROM {db}.spans UNION ALL SELECT tenant_id FROM {db}.spans_minute",
    "self join": "SELECT a.tenant_id FROM {db}.spans AS a CROSS JOIN {db}.spans AS b",
    "in subquery": "SELECT tenant_id FROM {db}.spans WHERE trace_id IN (SELECT trace_id FROM {db}.spans)",
    "scalar subquery": "SELECT (SELECT groupArray(DISTINCT tenant_id) FROM {db}.spans)[1]",
    "rollup minute": "SELECT tenant_id FROM {db}.spans_minute",
    "rollup hour": "SELECT tenant_id FROM {db}.spans_hour",
    "rollup day": "SELECT tenant_id FROM {db}.spans_day",
    "materialized view": "SELECT tenant_id FROM {db}.spans_hour_mv",
    "view": "SELECT tenant_id FROM {db}.spend_by_day",
    "percentile view": "SELECT tenant_id FROM {db}.latency_percentiles_minute",
}


@pytest.mark.parametrize("sql", CONTAINED.values(), ids=list(CONTAINED))
def test_sql_that_reaches_for_other_tenants_still_sees_one(settings: Settings, sql: str) -> None:
    assert tenants_seen(settings, sql) == {"acme"}


#: SQL that cannot be scoped: refused before it runs, or by ClickHouse's read-only session.
REFUSED = {
    "settings clause": ("SELECT tenant_id FROM {db}.spans SETTINGS additional_table_filters = {}", "readonly"),
    "readonly off": ("SELECT tenant_id FROM {db}.spans SETTINGS readonly = 0", "readonly"),
    "set": ("SET additional_table_filters = {}", "only SELECT"),
    "merge()": ("SELECT tenant_id FROM merge('" + DB + "', '^spans$')", "table function merge()"),
    "numbers()": ("SELECT number FROM numbers(3)", "table function numbers()"),
    "remote()": ("SELECT tenant_id FROM remote('127.0.0.1', '" + DB + "', 'spans')", "table function remote()"),
    "file()": ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "table function file()"),
    "view()": ("SELECT * FROM view(SELECT tenant_id FROM {db}.spans)", "table function view()"),
    "system table": ("SELECT name FROM system.tables", "outside the"),
    "query log": ("SELECT query FROM system.query_log", "outside the"),
    "information schema": ("SELECT * FROM information_schema.tables", "outside the"),
    "other database": ("SELECT v FROM {db}_other.secrets", "outside the"),
    "join other database": (
        "SELECT s.tenant_id FROM {db}.spans AS s JOIN {db}_other.secrets AS o USING tenant_id",
        "outside the",
    ),
    "subquery system table": (
        "SELECT tenant_id FROM {db}.spans WHERE tenant_id IN (SELECT name FROM system.databases)",
        "outside the",
    ),
    "ledger": ("SELECT * FROM {db}.ingest_ledger", "no tenant_id column"),
    "bare ledger": ("SELECT * FROM ingest_ledger", "no tenant_id column"),
    "migrations": ("SELECT * FROM {db}.schema_migrations", "no tenant_id column"),
    "in table": ("SELECT tenant_id FROM {db}.spans WHERE tenant_id IN {db}_other.secrets", "IN (SELECT"),
    "dictGet": ("SELECT dictGet('" + DB + ".d', 'v', 1)", "dictGet()"),
    "joinGet": ("SELECT joinGet('" + DB + ".j', 'v', 1)", "joinGet()"),
    "file function": ("SELECT file('/etc/passwd')", "file()"),
    "insert": ("INSERT INTO {db}.spans (tenant_id) VALUES ('acme')", "only SELECT"),
    "drop": ("DROP TABLE {db}.spans", "only SELECT"),
    "alter": ("ALTER TABLE {db}.spans DELETE WHERE 1", "only SELECT"),
    "show": ("SHOW TABLES FROM system", "only SELECT"),
    "describe": ("DESCRIBE TABLE {db}.ingest_ledger", "only SELECT"),
    "explain": ("EXPLAIN SELECT * FROM system.tables", "only SELECT"),
    "two statements": ("SELECT 1; DROP TABLE {db}.spans", "cannot parse"),
    "bare in table": ("SELECT count() FROM {db}.spans WHERE tenant_id IN ingest_ledger", "IN (SELECT"),
    "into outfile": ("SELECT tenant_id FROM {db}.spans INTO OUTFILE '/tmp/spanline-outfile-probe'", "INTO OUTFILE"),
}


@pytest.mark.parametrize(("sql", "message"), REFUSED.values(), ids=list(REFUSED))
def test_sql_that_would_escape_the_scope_is_refused(settings: Settings, sql: str, message: str) -> None:
    with pytest.raises(Exception) as raised:
        scoped(settings, sql)
    assert message in str(raised.value)
    # and nothing changed
    assert run_query(settings, f"SELECT count() FROM {DB}.spans").rows == [[sum(SPANS.values())]]


@pytest.mark.parametrize("tenant", ["acme' OR '1' = '1", "acme\\' OR 1 --", "x'}, 'other': '1"])
def test_a_tenant_id_cannot_inject_into_the_filter(settings: Settings, tenant: str) -> None:
    assert scoped(settings, "SELECT count() FROM {db}.spans", tenant) == [[0]]
    assert "tenant_id = " in filter_setting(DB, ["spans"], tenant)


def test_an_empty_tenant_is_refused(settings: Settings) -> None:
    with pytest.raises(ScopeError, match="non-empty tenant"):
        scoped(settings, "SELECT 1", "")


def test_unscoped_read_only_queries_cannot_write_files(settings: Settings, tmp_path: Path) -> None:
    target = tmp_path / "outfile.csv"
    with pytest.raises(ScopeError, match="INTO OUTFILE"):
        run_query(settings, f"SELECT 1 INTO OUTFILE '{target}'")
    assert not target.exists()


def test_parameters_are_bound_not_pasted(settings: Settings) -> None:
    attack = f"x'); DROP TABLE {DB}.spans; --"
    assert run_query(settings, "SELECT {value:String}", {"value": attack}).rows == [[attack]]
    assert scoped(settings, "SELECT count() FROM {db}.spans WHERE service = {s:String}", s="svc' OR '1'='1") == [[0]]
    assert run_query(settings, f"SELECT count() FROM {DB}.spans").rows == [[sum(SPANS.values())]]


def test_named_queries_bind_the_tenant_and_scope_it(settings: Settings) -> None:
    everyone = run_named(settings, "spend_by_day", {"since": "2000-01-01"}).rows
    assert {row[1] for row in everyone} >= {"acme", "globex"}
    injected = run_named(settings, "spend_by_day", {"since": "2000-01-01", "tenant": "acme' OR '1'='1"}).rows
    assert injected == []
    globex = run_named(settings, "spend_by_day", {"since": "2000-01-01"}, tenant="globex").rows
    assert globex and {row[1] for row in globex} == {"globex"}
    with pytest.raises(ConfigError, match="conflicts"):
        run_named(settings, "spend_by_day", {"tenant": "acme"}, tenant="globex")
    assert issubclass(ScopeError, SpanlineError)
