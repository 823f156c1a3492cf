"""The pipeline's own SQL statements (sql/statements/*.sql): each loads, renders and runs on chDB.

Every statement is parsed by ClickHouse (``EXPLAIN AST``) with a value bound to each of its
``{name:Type}`` parameters, and, except the session settings, also run against an empty
migrated database, so a misspelt table or column fails here rather than in a restarting worker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from clickhouse_connect.driver.client import Client

from spanline.alerts.baselines import SKETCH_ACCURACY
from spanline.alerts.bootstrap import DIMENSIONS, SKETCH_LEVELS
from spanline.alerts.history import COLUMNS
from spanline.contract.schema import TOKEN_DETAIL_FIELDS, TOKEN_FIELDS
from spanline.errors import ConfigError
from spanline.sql.client import connect
from spanline.sql.migrate import apply_migrations
from spanline.sql.statements import STATEMENTS_DIR, render_statement, statement
from spanline.sql.templates import placeholders, render
from spanline.sql.tenant_scope import filter_setting
from spanline.windows.aggregate import ROW_COLUMNS

DB = "statements"
NAMES = sorted(path.stem for path in STATEMENTS_DIR.glob("*.sql"))
#: A value for every ``${placeholder}`` the statements use, shaped as their callers fill them.
SAMPLE_VALUES = {
    "database": DB,
    "table": "spans_hour",
    "bucket": "hour",
    "columns": ", ".join(ROW_COLUMNS),
    "dimensions": ", ".join(DIMENSIONS),
    "aggregates": "sum(spans) AS spans, sumMap(errors_by_type) AS errors_by_type",
    "group": "tenant_id, hour",
    "column": "ttft_us_sketch",
    "level": "2",
    "divisor": "1000.0",
    "filters": filter_setting(DB, ["spans"], "acme"),
    "join": "reprice_join_sample",
    "tokens": ", ".join((*TOKEN_FIELDS, *TOKEN_DETAIL_FIELDS)),
}
_BINDING = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    chdb = connect(f"chdb://{tmp_path_factory.mktemp('statements') / 'chdb'}")
    apply_migrations(chdb, DB, ttl_days=30)
    yield chdb
    chdb.close()  # chDB admits one open data path per process


def rendered(name: str) -> str:
    return render(statement(name), {key: SAMPLE_VALUES[key] for key in placeholders(statement(name))})


def sample_parameters(sql: str) -> dict[str, object]:
    """A value of the declared type for every ``{name:Type}`` binding in ``sql``."""
    values: dict[str, object] = {}
    for name, type_ in _BINDING.findall(sql):
        if type_ == "String":
            values[name] = "acme"
        elif re.fullmatch(r"U?Int\d+", type_):
            values[name] = 1
        elif type_.startswith("DateTime"):
            values[name] = datetime(2026, 11, 20, tzinfo=UTC)
        elif type_ == "Array(String)":
            values[name] = ["llm"]
        else:
            raise AssertionError(f"no sample value for the type {type_}; add one")
    return values


def test_the_statements_are_there() -> None:
    assert len(NAMES) >= 20 and "ledger_open_intents" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_statement_says_why_and_parses_and_runs(client: Client, name: str) -> None:
    text = (STATEMENTS_DIR / f"{name}.sql").read_text(encoding="utf-8")
    assert text.startswith("-- "), f"{name}.sql should open with a comment saying what it is for"
    assert placeholders(statement(name)) <= SAMPLE_VALUES.keys()
    sql = rendered(name)
    parameters = sample_parameters(sql)
    assert client.query(f"EXPLAIN AST {sql}", parameters=parameters).result_rows
    if sql.startswith("SELECT"):
        client.query(sql, parameters=parameters)
    elif not sql.startswith("SET"):  # a SET would change this test session's settings
        client.command(sql, parameters=parameters)


def test_open_incidents_reads_every_alert_column(client: Client) -> None:
    sql = render_statement("alerts_open_incidents", database=DB)
    names = [row[0] for row in client.query(f"DESCRIBE ({sql})").result_rows]
    assert sorted(name.rstrip("_") for name in names) == sorted(COLUMNS)


def test_hourly_quantiles_merge_the_sketches_the_rollups_store() -> None:
    assert f"quantilesDDMerge{(SKETCH_ACCURACY, *SKETCH_LEVELS)}" in statement("alerts_hourly_quantiles")


def test_placeholders_take_identifiers_only() -> None:
    columns = render_statement("changelog_open_spans", database=DB, columns=["trace_id", "span_id"])
    assert columns.startswith("SELECT trace_id, span_id\nFROM statements.spans")
    with pytest.raises(ConfigError, match="plain identifier"):
        render_statement("ledger_open_intents", database="spanline.spans; DROP TABLE x")
    with pytest.raises(ConfigError, match="plain identifier"):
        render_statement("changelog_open_spans", database=DB, columns=["trace_id", "1 OR 1"])
    with pytest.raises(ConfigError, match="no value"):
        render_statement("ledger_open_intents")
    with pytest.raises(ConfigError, match="no SQL statement"):
        statement("no_such_statement")
