"""Migrations: rendered text, idempotent runs, drift detection, the DDL as designed, insert dedup.

Database tests run on one chDB path for the module (chDB allows one open path per process;
the fixture closes its client so other modules can open theirs).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from clickhouse_connect.driver.client import Client

from spanline.contract.schema import TOKEN_DETAIL_FIELDS, TOKEN_FIELDS
from spanline.errors import ConfigError
from spanline.sql.migrate import (
    EARLIER_CHECKSUMS,
    MIGRATIONS_DIR,
    apply_migrations,
    load_migrations,
    pending_migrations,
    template_values,
)
from spanline.sql.templates import placeholders, render, split_statements, ttl_clause
from spanline.streams.frame import TABLE_COLUMNS
from tests.support.chdb import migrated_chdb

DB = "spanline_mig"

#: The raw table's contract with the worker: names, order and types.
SPANS_COLUMNS: list[tuple[str, str]] = [
    *[(name, "LowCardinality(String)") for name in ("tenant_id", "service", "feature", "environment", "kind", "name")],
    ("start_time", "DateTime64(3, 'UTC')"),
    ("end_time", "DateTime64(3, 'UTC')"),
    ("duration_ms", "Float64"),
    ("trace_id", "String"),
    ("span_id", "String"),
    ("parent_span_id", "String"),
    ("status", "LowCardinality(String)"),
    ("error_type", "LowCardinality(String)"),
    ("http_status", "UInt16"),
    ("retry_after_s", "Nullable(Float32)"),
    ("attempt", "UInt16"),
    ("finish_reason", "LowCardinality(String)"),
    *[
        (name, "LowCardinality(String)")
        for name in ("provider", "endpoint", "region", "model_requested", "model_response")
    ],
    *[(name, "UInt32") for name in (*TOKEN_FIELDS, *TOKEN_DETAIL_FIELDS, "context_window")],
    ("context_truncated", "Bool"),
    ("ttft_ms", "Nullable(Float64)"),
    ("tpot_ms", "Nullable(Float64)"),
    ("cache_hit", "Nullable(Bool)"),
    ("cache_layer", "LowCardinality(String)"),
    ("cache_similarity", "Nullable(Float32)"),
    *[
        (name, "LowCardinality(String)")
        for name in ("route", "model_tier", "routing_reason", "fallback_from", "prompt_id", "prompt_version")
    ],
    ("prompt_hash", "String"),
    ("user_id_hash", "String"),
    ("session_id", "String"),
    ("index_name", "LowCardinality(String)"),
    ("top_k", "Nullable(UInt32)"),
    ("retrieval_doc_ids", "Array(String)"),
    ("retrieval_scores", "Array(Float32)"),
    ("embedding_model", "LowCardinality(String)"),
    ("index_embedding_model", "LowCardinality(String)"),
    ("index_documents", "Nullable(UInt64)"),
    ("index_chunks", "Nullable(UInt64)"),
    ("tool_name", "LowCardinality(String)"),
    ("eval_name", "LowCardinality(String)"),
    ("eval_score", "Nullable(Float64)"),
    ("eval_passed", "Nullable(Bool)"),
    ("attributes", "Map(LowCardinality(String), String)"),
    ("cost_usd_reported", "Nullable(Float64)"),
    ("content", "String"),
    *[
        (name, "Float64")
        for name in ("input_cost_usd", "cache_read_cost_usd", "cache_write_cost_usd", "output_cost_usd", "cost_usd")
    ],
    ("cost_known", "Bool"),
    ("price_source", "LowCardinality(String)"),
    ("price_version", "LowCardinality(String)"),
    ("price_entry", "LowCardinality(String)"),
    ("schema_version", "UInt8"),
    ("source", "LowCardinality(String)"),
    ("ingested_at", "DateTime64(3, 'UTC')"),
    ("kafka_topic", "LowCardinality(String)"),
    ("kafka_partition", "Int32"),
    ("kafka_offset", "Int64"),
    ("kafka_timestamp", "DateTime64(3, 'UTC')"),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with migrated_chdb(tmp_path_factory.mktemp("migrations") / "chdb", DB) as chdb:
        yield chdb


def _create_statement(client: Client, table: str) -> str:
    return str(client.query(f"SHOW CREATE TABLE {table}").result_rows[0][0])


# --- rendering (no database)


def test_every_migration_renders_completely_and_keeps_query_parameters() -> None:
    values = template_values("spanline", 30)
    for migration in load_migrations():
        assert placeholders(migration.sql) <= values.keys(), migration.name
        rendered = render(migration.sql, values)
        assert "${" not in rendered and "spanline." in rendered, migration.name
    query = "SELECT {tenant:String}, match(name, '^a$'), '$$' FROM ${database}.spans WHERE x = {x:Array(UInt8)}"
    assert render(query, values) == (
        "SELECT {tenant:String}, match(name, '^a$'), '$$' FROM spanline.spans WHERE x = {x:Array(UInt8)}"
    )


def test_placeholders_must_have_a_value_and_be_well_formed() -> None:
    values = template_values("spanline", 30)
    with pytest.raises(ConfigError, match="no value: ttl_days"):
        render("SELECT ${ttl_days}", values)
    with pytest.raises(ConfigError, match="malformed placeholder '\\$\\{Database\\}'"):
        render("SELECT 1 FROM ${Database}.spans", values)
    with pytest.raises(ConfigError, match="plain identifier"):
        template_values("spanline; DROP DATABASE x", 30)


def test_the_ttl_clause_has_one_builder() -> None:
    assert ttl_clause("start_time", 9) == "TTL toDateTime(start_time) + INTERVAL 9 DAY"
    assert template_values("db", 9)["spans_ttl"] == "TTL toDateTime(start_time) + INTERVAL 9 DAY"
    assert template_values("db", 9)["ledger_ttl"] == "TTL toDateTime(created_at) + INTERVAL 7 DAY"
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ConfigError, match="whole number of days"):
            ttl_clause("start_time", bad)
    with pytest.raises(ConfigError, match="identifier"):
        ttl_clause("start_time) + 1 --", 9)


def test_statements_split_on_semicolons_outside_quotes_and_comments() -> None:
    script = (
        "CREATE TABLE a (x String DEFAULT 'a;b', `we;ird` Int8) ENGINE = Memory;\n"
        "-- a comment; with a semicolon\n"
        "INSERT INTO a VALUES ('it''s;', 1), ('back\\\\slash\\';', 2) /* block; comment */;\n"
        'SELECT "quoted;identifier" FROM a;;\n'
        "  -- trailing comment only\n"
    )
    assert split_statements(script) == [
        "CREATE TABLE a (x String DEFAULT 'a;b', `we;ird` Int8) ENGINE = Memory",
        "INSERT INTO a VALUES ('it''s;', 1), ('back\\\\slash\\';', 2)",
        'SELECT "quoted;identifier" FROM a',
    ]
    assert split_statements("SELECT 1") == ["SELECT 1"]
    with pytest.raises(ConfigError, match='unterminated "\'" starting on line 2'):
        split_statements("SELECT 1;\nSELECT 'open; SELECT 2")
    with pytest.raises(ConfigError, match="unterminated '/\\*'"):
        split_statements("SELECT 1 /* never closed; SELECT 2")


def test_every_migration_statement_can_run_twice() -> None:
    for migration in load_migrations():
        for statement in split_statements(migration.sql):
            head = " ".join(statement.split()[:8]).upper()
            if head.startswith(("CREATE", "ALTER", "DROP")):
                assert any(guard in head for guard in ("IF NOT EXISTS", "IF EXISTS")), f"{migration.name}: {head}"


def test_no_migration_alters_a_view_in_place() -> None:
    """A view changed by ALTER ... MODIFY QUERY derives other insert deduplication tokens in the
    process that altered it than after a restart, so a replayed batch counts twice below it
    (tests/test_rollup_writer.py): a view is dropped and created again instead (0012)."""
    for migration in load_migrations():
        for statement in split_statements(migration.sql):  # comments are not statements
            assert "MODIFY QUERY" not in " ".join(statement.split()).upper(), migration.name


def test_migration_files_must_be_numbered_once(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0001_b.sql").write_text("SELECT 1")
    with pytest.raises(ConfigError, match=r"share the number.*0001"):
        load_migrations(tmp_path)
    (tmp_path / "0001_b.sql").rename(tmp_path / "2_b.sql")
    with pytest.raises(ConfigError, match=r"NNNN_name\.sql: 2_b\.sql"):
        load_migrations(tmp_path)


# --- applying (chDB)


def test_migrations_apply_to_an_empty_database_once(client: Client) -> None:
    database = "spanline_fresh"
    names = [m.name for m in load_migrations()]
    assert names[:2] == ["0001_spans", "0002_ingest_ledger"]
    assert [m.name for m in pending_migrations(client, database)] == names
    assert not client.command(f"EXISTS DATABASE {database}")  # pending_migrations only reads
    assert apply_migrations(client, database, ttl_days=30) == names
    assert pending_migrations(client, database) == []
    assert apply_migrations(client, database, ttl_days=30) == []
    recorded = client.query(f"SELECT name, checksum FROM {database}.schema_migrations ORDER BY name").result_rows
    assert recorded == [(m.name, m.checksum) for m in load_migrations()]


def test_an_edited_applied_migration_is_refused_and_new_ones_apply(client: Client, tmp_path: Path) -> None:
    database = "spanline_drift"
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    apply_migrations(client, database, ttl_days=30, directory=directory)
    next_number = max(int(path.name[:4]) for path in directory.glob("*.sql")) + 1
    (directory / f"{next_number:04d}_extra.sql").write_text(
        "CREATE TABLE IF NOT EXISTS ${database}.extra (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
        "CREATE TABLE IF NOT EXISTS ${database}.extra2 (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
    )
    assert apply_migrations(client, database, ttl_days=30, directory=directory) == [f"{next_number:04d}_extra"]
    assert client.command(f"EXISTS TABLE {database}.extra2") == 1
    ledger = directory / "0002_ingest_ledger.sql"
    ledger.write_text(ledger.read_text() + "\n-- an innocent-looking edit\n")
    for run in (pending_migrations, lambda c, d, directory: apply_migrations(c, d, 30, directory)):
        with pytest.raises(ConfigError, match="0002_ingest_ledger changed after being applied"):
            run(client, database, directory=directory)


def test_spans_columns_are_the_worker_contract(client: Client) -> None:
    columns = client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'spans' ORDER BY position",
        parameters={"db": DB},
    ).result_rows
    assert columns == SPANS_COLUMNS
    assert tuple(name for name, _ in columns) == TABLE_COLUMNS


def test_spans_layout_partitions_ttl_settings_index_and_codecs(client: Client) -> None:
    partition_key, sorting_key = client.query(
        "SELECT partition_key, sorting_key FROM system.tables WHERE database = {db:String} AND name = 'spans'",
        parameters={"db": DB},
    ).result_rows[0]
    assert partition_key == "toDate(start_time)"
    assert sorting_key == ("tenant_id, service, feature, kind, toStartOfHour(start_time), model_requested, start_time")
    create = _create_statement(client, f"{DB}.spans")
    assert "ENGINE = MergeTree\n" in create
    assert "TTL toDateTime(start_time) + toIntervalDay(30)\n" in create
    assert "ttl_only_drop_parts = 1" in create and "non_replicated_deduplication_window = 1000" in create
    indices = client.query(
        "SELECT name, type_full, expr, granularity FROM system.data_skipping_indices "
        "WHERE database = {db:String} AND table = 'spans'",
        parameters={"db": DB},
    ).result_rows
    assert indices == [("idx_trace_id", "bloom_filter(0.001)", "trace_id", 1)]
    codecs = {
        str(name): str(codec)
        for name, codec in client.query(
            "SELECT name, compression_codec FROM system.columns "
            "WHERE database = {db:String} AND table = 'spans' AND compression_codec != ''",
            parameters={"db": DB},
        ).result_rows
    }
    delta = "CODEC(Delta(8), ZSTD(1))"
    assert {name: codecs[name] for name in ("start_time", "end_time", "ingested_at", "kafka_offset")} == {
        "start_time": delta,
        "end_time": delta,
        "ingested_at": delta,
        "kafka_offset": delta,
    }
    assert codecs["content"] == "CODEC(ZSTD(3))"
    for name in ("trace_id", "span_id", "attributes", "retrieval_doc_ids", "prompt_hash"):
        assert codecs[name] == "CODEC(ZSTD(1))", name


def test_ledger_layout(client: Client) -> None:
    columns = client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'ingest_ledger' "
        "ORDER BY position",
        parameters={"db": DB},
    ).result_rows
    assert columns == [
        ("topic", "LowCardinality(String)"),
        ("topic_id", "LowCardinality(String)"),
        ("partition", "Int32"),
        ("first_offset", "Int64"),
        ("last_offset", "Int64"),
        ("token", "String"),
        ("created_at", "DateTime64(3, 'UTC')"),
    ]
    create = _create_statement(client, f"{DB}.ingest_ledger")
    assert "ORDER BY (topic, topic_id, partition, first_offset)\n" in create
    assert "TTL toDateTime(created_at) + toIntervalDay(7)\n" in create
    assert "non_replicated_deduplication_window = 1000" in create


def test_ttl_days_come_from_the_setting(client: Client) -> None:
    apply_migrations(client, "spanline_ttl9", ttl_days=9)
    assert "TTL toDateTime(start_time) + toIntervalDay(9)\n" in _create_statement(client, "spanline_ttl9.spans")


def _spans_frame(rows: int, offset: int) -> pd.DataFrame:
    """``rows`` recent spans (older ones would fall to the TTL) with every column filled."""
    hour_ago = pd.Timestamp(datetime.now(UTC)).floor("h") - pd.Timedelta(hours=1)
    start = hour_ago + pd.to_timedelta(range(rows), unit="s")
    text = {
        name: [f"{name}-{i % 3}" for i in range(rows)]
        for name, kind in SPANS_COLUMNS
        if kind in ("String", "LowCardinality(String)")
    }
    frame = pd.DataFrame(text)
    frame["start_time"] = start.as_unit("ms")
    frame["end_time"] = (start + timedelta(milliseconds=250)).as_unit("ms")
    frame["ingested_at"] = start.as_unit("ms")
    frame["kafka_timestamp"] = start.as_unit("ms")
    for name, kind in SPANS_COLUMNS:
        if kind in ("UInt8", "UInt16", "UInt32", "Int32", "Int64"):
            frame[name] = 1
        elif kind == "Float64":
            frame[name] = 0.5
        elif kind == "Bool":
            frame[name] = True
        elif kind.startswith("Nullable("):
            frame[name] = pd.array([None] * rows, dtype="Float64" if "Float" in kind else "Int64")
    frame["cache_hit"] = pd.array([True, None] * (rows // 2) + [None] * (rows % 2), dtype="boolean")
    frame["eval_passed"] = pd.array([None] * rows, dtype="boolean")
    frame["top_k"] = pd.array([5] * rows, dtype="UInt32")
    frame["retrieval_doc_ids"] = [["d1", "d2"]] * rows
    frame["retrieval_scores"] = [[0.9, 0.8]] * rows
    frame["attributes"] = [{"k": "v"}] * rows
    frame["kafka_offset"] = range(offset, offset + rows)
    return frame[[name for name, _ in SPANS_COLUMNS]]


def test_a_redelivered_batch_is_stored_once_in_the_table_and_its_views(client: Client) -> None:
    client.command(
        f"CREATE TABLE IF NOT EXISTS {DB}.spans_per_tenant (tenant_id LowCardinality(String), n UInt64) "
        "ENGINE = SummingMergeTree ORDER BY tenant_id SETTINGS non_replicated_deduplication_window = 1000"
    )
    client.command(
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {DB}.spans_per_tenant_mv TO {DB}.spans_per_tenant "
        f"AS SELECT tenant_id, count() AS n FROM {DB}.spans GROUP BY tenant_id"
    )
    settings = {"async_insert": 0, "deduplicate_blocks_in_dependent_materialized_views": 1}
    batch = _spans_frame(100, offset=1_000)
    for _ in range(2):  # the original insert and its redelivery
        client.insert_df(f"{DB}.spans", batch, settings={**settings, "insert_deduplication_token": "spans:0:1000-1099"})
    # a different batch whose content happens to be identical still counts: the token decides
    client.insert_df(f"{DB}.spans", batch, settings={**settings, "insert_deduplication_token": "spans:1:1000-1099"})
    assert client.command(f"SELECT count() FROM {DB}.spans") == 200
    assert client.command(f"SELECT sum(n) FROM {DB}.spans_per_tenant") == 200
    stored = client.query_df(f"SELECT * FROM {DB}.spans ORDER BY kafka_offset LIMIT 1 BY kafka_offset LIMIT 2")
    assert list(stored["retrieval_doc_ids"][0]) == ["d1", "d2"] and stored["attributes"][0] == {"k": "v"}
    assert bool(stored["cache_hit"][0]) and pd.isna(stored["cache_hit"][1]) and int(stored["top_k"][0]) == 5


def test_ledger_records_are_deduplicated_by_token(client: Client) -> None:
    row = [["spans", "id1", 0, 10, 19, "spans:0:10-19", datetime.now(UTC)]]
    columns = ["topic", "topic_id", "partition", "first_offset", "last_offset", "token", "created_at"]
    for _ in range(2):
        client.insert(
            f"{DB}.ingest_ledger",
            row,
            column_names=columns,
            settings={"insert_deduplication_token": "ledger:spans:0:10-19", "async_insert": 0},
        )
    assert client.command(f"SELECT count() FROM {DB}.ingest_ledger WHERE token = 'spans:0:10-19'") == 1


def test_a_database_migrated_before_a_comment_only_edit_is_up_to_date(client: Client) -> None:
    """0003 and 0005 once cited a document outside the repository in their first comment line;
    a database that recorded those files' checksums has the same statements applied."""
    database = "spanline_earlier_comments"
    apply_migrations(client, database, ttl_days=30)
    for name, checksums in EARLIER_CHECKSUMS.items():
        (earlier,) = checksums
        client.command(
            f"ALTER TABLE {database}.schema_migrations UPDATE checksum = {{c:String}} WHERE name = {{n:String}}",
            parameters={"c": earlier, "n": name},
            settings={"mutations_sync": 2},
        )
    assert pending_migrations(client, database) == []
    assert apply_migrations(client, database, ttl_days=30) == []
