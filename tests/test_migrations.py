"""Migrations on chDB: DDL as designed, idempotent, drift detected, inserts deduplicated."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from spanline.errors import ConfigError, RejectedDataError, RetryableStorageError
from spanline.sql.classify import storage_errors
from spanline.sql.client import connect
from spanline.sql.migrate import (
    Migration, apply_migrations, load_migrations, render, split_statements, template_data, ttl_clause,
)
from spanline.streams.frame import TABLE_COLUMNS

DB = "mig_test"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    yield connect(f"chdb://{tmp_path_factory.mktemp('chdb')}")


def test_templates_fill_every_placeholder_and_keep_query_parameters() -> None:
    data = template_data("spanline", 30)
    for migration in load_migrations():
        rendered = render(migration.sql, data)
        assert "${" not in rendered
    assert render("SELECT {tenant:String} FROM ${database}.t", data) == "SELECT {tenant:String} FROM spanline.t"
    with pytest.raises(ConfigError, match="unknown placeholder"):
        render("SELECT ${nope}", data)
    with pytest.raises(ConfigError, match="identifier"):
        template_data("x; DROP TABLE y", 30)
    assert ttl_clause("start_time", 7) == "TTL toDateTime(start_time) + INTERVAL 7 DAY"


def test_statement_splitter_respects_quotes_and_comments() -> None:
    sql = "SELECT 'a;b'; -- c;d\nSELECT \"x;\" /* ; */ ; SELECT 3"
    assert split_statements(sql) == ["SELECT 'a;b'", 'SELECT "x;"', "SELECT 3"]


def test_apply_is_idempotent_and_the_ddl_is_as_designed(client: object) -> None:
    applied = apply_migrations(client, DB, ttl_days=9)
    assert applied == [m.name for m in load_migrations()]
    assert apply_migrations(client, DB, ttl_days=9) == []
    create = client.query(f"SHOW CREATE TABLE {DB}.spans").result_rows[0][0]
    assert "PARTITION BY toDate(start_time)" in create
    assert "ORDER BY (tenant_id, service, feature, kind, toStartOfHour(start_time)" in create
    assert "TTL toDateTime(start_time) + toIntervalDay(9)" in create
    assert "ttl_only_drop_parts = 1" in create and "non_replicated_deduplication_window = 1000" in create
    assert "INDEX idx_trace_id trace_id TYPE bloom_filter(0.01)" in create
    assert "`start_time` DateTime64(3, 'UTC') CODEC(Delta(8), ZSTD(1))" in create
    columns = client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'spans' ORDER BY position",
        parameters={"db": DB},
    ).result_rows
    assert tuple(name for name, _ in columns) == TABLE_COLUMNS
    assert dict(columns)["tenant_id"] == "LowCardinality(String)"


def test_a_changed_migration_is_refused(client: object) -> None:
    apply_migrations(client, DB, ttl_days=9)
    first = load_migrations()[0]
    with pytest.raises(ConfigError, match="changed after it was applied"):
        apply_migrations(client, DB, 9, [Migration(first.name, first.sql + "\n-- edited")])


def test_same_token_twice_stores_the_block_once(client: object) -> None:
    apply_migrations(client, DB, ttl_days=9)
    rows = [["spans", 0, 10, 19, "t:0:10-19", datetime.now(timezone.utc)]]
    columns = ["topic", "partition", "first_offset", "last_offset", "token", "created_at"]
    for _ in range(2):
        client.insert(f"{DB}.ingest_ledger", rows, column_names=columns,
                      settings={"insert_deduplication_token": "dedup-test", "async_insert": 0})
    assert client.command(f"SELECT count() FROM {DB}.ingest_ledger WHERE token = 't:0:10-19'") == 1


def test_errors_are_sorted_into_rejected_data_and_retryable(client: object) -> None:
    apply_migrations(client, DB, ttl_days=9)
    with pytest.raises(RejectedDataError):
        with storage_errors():
            client.insert_df(f"{DB}.ingest_ledger", pd.DataFrame({"partition": [-1], "first_offset": ["x"]}))
    with pytest.raises(RetryableStorageError):
        with storage_errors():
            client.query("SELECT * FROM mig_test.table_that_does_not_exist")
    refused = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(RetryableStorageError):
        with storage_errors():
            connect(refused).query("SELECT 1")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
