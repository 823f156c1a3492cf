"""Opening ClickHouse and sorting its failures, with real failures from chDB and real sockets.

The module uses one chDB path (chDB allows one open path per process) and closes its clients
at the end; a path held by another process is tested with child processes.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DataError, OperationalError

from spanline.errors import ConfigError, RejectedDataError, RetryableStorageError
from spanline.sql.classify import BAD_DATA_CODES, classify, storage_errors
from spanline.sql.client import connect

DB = "client_test"
VALUES = f"{DB}.bad_values"


@pytest.fixture(scope="module")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("client") / "not" / "yet" / "there"


@pytest.fixture(scope="module")
def client(chdb_path: Path) -> Iterator[Client]:
    chdb = connect(f"chdb://{chdb_path}")
    chdb.command(f"CREATE DATABASE IF NOT EXISTS {DB}")
    chdb.command(
        f"CREATE TABLE {VALUES} (s String, u16 UInt16, i64 Int64, ts DateTime64(3, 'UTC'), arr Array(String), "
        "b Bool, d Decimal(9, 2)) ENGINE = MergeTree ORDER BY s"
    )
    yield chdb
    chdb.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- connecting


def test_chdb_connect_creates_the_directory_and_uses_the_database(client: Client, chdb_path: Path) -> None:
    assert chdb_path.is_dir() and client.command("SELECT 1") == 1
    scoped = connect(f"chdb://{chdb_path}/", database=DB)  # another spelling of the same path
    try:
        assert scoped.command("SELECT currentDatabase()") == DB
        assert scoped.command("SELECT count() FROM bad_values") == 0
    finally:
        scoped.close()


@pytest.mark.parametrize("url", ["chdb://relative/path", "chdb:///abs?option=1", "ftp://host", "clickhouse:8123"])
def test_malformed_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="must be"):
        connect(url)


def test_a_second_chdb_path_in_one_process_is_a_config_error(client: Client, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"already has the chDB path .* open .* close its clients"):
        connect(f"chdb://{tmp_path / 'other'}")
    assert client.command("SELECT 1") == 1  # the open path is unaffected


def test_a_chdb_path_held_by_another_process_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "held"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys
            from spanline.sql.client import connect
            client = connect("chdb://{path}")
            print("ready", flush=True)
            sys.stdin.read()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        second = subprocess.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(f"""
                from spanline.errors import ConfigError
                from spanline.sql.client import connect
                try:
                    connect("chdb://{path}")
                except ConfigError as exc:
                    print(exc)
            """),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.communicate(input="", timeout=60)
    assert second.stdout.strip() == (
        f"another Spanline process (pid {holder.pid}) holds this chDB path ({path}); "
        "query through the running service or stop it"
    )


@pytest.mark.parametrize("scheme, pool", [("http", "HTTPConnectionPool"), ("https", "HTTPSConnectionPool")])
def test_http_connection_refused_is_retryable(scheme: str, pool: str) -> None:
    with pytest.raises(RetryableStorageError, match="Connection refused") as caught, storage_errors():
        connect(f"{scheme}://default@127.0.0.1:{_free_port()}")
    assert isinstance(caught.value.__cause__, OperationalError)
    assert pool in str(caught.value)  # the URL's scheme, not the port, decides on TLS


def test_http_timeout_is_retryable_and_dsn_options_reach_the_client() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(RetryableStorageError, match=r"Read timed out. \(read timeout=1\)"), storage_errors():
            connect(f"http://default@127.0.0.1:{port}/?connect_timeout=1&send_receive_timeout=1")


# --- per-insert settings reach chDB


def _insert_rows(client: Client, table: str, value: int, settings: dict[str, object]) -> None:
    client.insert(table, [["k", value]], column_names=["s", "i64"], settings=settings)


def _insert_df(client: Client, table: str, value: int, settings: dict[str, object]) -> None:
    client.insert_df(table, pd.DataFrame({"s": ["k"], "i64": [value]}), settings=settings)


def _insert_arrow(client: Client, table: str, value: int, settings: dict[str, object]) -> None:
    client.insert_arrow(table, pa.table({"s": ["k"], "i64": pa.array([value], pa.int64())}), settings=settings)


@pytest.mark.parametrize(
    "insert", [_insert_rows, _insert_df, _insert_arrow], ids=["insert", "insert_df", "insert_arrow"]
)
def test_insert_settings_reach_chdb(
    client: Client, insert: Callable[[Client, str, int, dict[str, object]], None]
) -> None:
    table = f"{DB}.dedup{insert.__name__}"
    client.command(
        f"CREATE TABLE {table} (s String, i64 Int64) ENGINE = MergeTree ORDER BY s "
        "SETTINGS non_replicated_deduplication_window = 100"
    )
    settings: dict[str, object] = {"async_insert": 0, "deduplicate_blocks_in_dependent_materialized_views": 1}
    insert(client, table, 1, {**settings, "insert_deduplication_token": "batch-1"})
    insert(client, table, 2, {**settings, "insert_deduplication_token": "batch-1"})  # other values, same token
    insert(client, table, 1, {**settings, "insert_deduplication_token": "batch-2"})  # same values, other token
    assert client.query(f"SELECT i64 FROM {table} ORDER BY i64").result_rows == [(1,), (1,)]


# --- classification


def test_bad_data_code_names_are_the_engines(client: Client) -> None:
    codes = sorted(BAD_DATA_CODES)
    names = client.query(
        "SELECT arrayMap(c -> errorCodeToName(c), {codes:Array(UInt32)})", parameters={"codes": codes}
    ).result_rows[0][0]
    assert dict(zip(codes, names, strict=False)) == BAD_DATA_CODES


BadInsert = Callable[[Client], object]

REJECTED: dict[str, tuple[BadInsert, int | None]] = {
    # refused by clickhouse-connect while serialising (code None)
    "null into String": (lambda c: c.insert(VALUES, [[None, 1]], column_names=["s", "u16"]), None),
    "70000 into UInt16": (lambda c: c.insert_df(VALUES, pd.DataFrame({"s": ["a"], "u16": [70_000]})), None),
    "text into Int64 (frame)": (lambda c: c.insert_df(VALUES, pd.DataFrame({"s": ["a"], "i64": ["x"]})), None),
    "None into Array": (lambda c: c.insert(VALUES, [["a", None]], column_names=["s", "arr"]), None),
    # refused by the engine
    "text into Int64 (arrow)": (lambda c: c.insert_arrow(VALUES, pa.table({"s": ["a"], "i64": ["x"]})), 6),
    "text into DateTime64": (lambda c: c.insert_arrow(VALUES, pa.table({"s": ["a"], "ts": ["soon"]})), 41),
    "text into Bool": (lambda c: c.insert_arrow(VALUES, pa.table({"s": ["a"], "b": ["maybe"]})), 467),
    "number into Array": (lambda c: c.insert_arrow(VALUES, pa.table({"s": ["a"], "arr": [1]})), 53),
    "NULL into String": (
        lambda c: c.raw_insert(
            VALUES, ["s", "u16"], "(NULL, 1)", fmt="Values", settings={"input_format_null_as_default": 0}
        ),
        53,
    ),
    "decimal too big": (lambda c: c.raw_insert(VALUES, ["s", "d"], "a,1e30\n", fmt="CSV"), 69),
    "broken array": (lambda c: c.raw_insert(VALUES, ["s", "arr"], "a\t[x\n", fmt="TSV"), 26),
    "impossible date": (lambda c: c.raw_insert(VALUES, ["s", "ts"], "a,2024-13-45 99:00:00\n", fmt="CSV"), 41),
    "garbled row": (lambda c: c.raw_insert(VALUES, ["s", "u16"], "a,notanumber\n", fmt="CSV"), 117),
    "value Arrow cannot convert": (lambda c: c.insert_arrow(VALUES, pa.table({"s": pa.array([1], pa.string())})), None),
}


@pytest.mark.parametrize("bad", list(REJECTED), ids=list(REJECTED))
def test_bad_values_are_rejected(client: Client, bad: str) -> None:
    insert, code = REJECTED[bad]
    with pytest.raises(RejectedDataError) as caught, storage_errors():
        insert(client)
    cause = caught.value.__cause__
    assert cause is not None and getattr(cause, "code", None) == code
    if code is not None:
        assert str(caught.value).startswith(f"ClickHouse {BAD_DATA_CODES[code]} (code {code}): ")
    assert client.command(f"SELECT count() FROM {VALUES}") == 0


RETRYABLE: dict[str, tuple[BadInsert, int | None]] = {
    "too many parts": (lambda c: [c.insert(f"{DB}.few_parts", [[s]], column_names=["s"]) for s in "ab"], 252),
    "memory limit": (
        lambda c: c.insert_df(
            VALUES, pd.DataFrame({"s": ["x" * 1000] * 10_000}), settings={"max_memory_usage": 10_000}
        ),
        241,
    ),
    "timeout": (lambda c: c.query("SELECT count() FROM numbers(1e12)", settings={"max_execution_time": 0.1}), 159),
    "read-only": (lambda c: c.insert(VALUES, [["a"]], column_names=["s"], settings={"readonly": 1}), 164),
    "table not created yet": (lambda c: c.insert_df(f"{DB}.not_migrated_yet", pd.DataFrame({"s": ["a"]})), 60),
    "column not created yet": (lambda c: c.insert_df(VALUES, pd.DataFrame({"added_later": [1]})), None),
}


@pytest.mark.parametrize("failure", list(RETRYABLE), ids=list(RETRYABLE))
def test_transient_and_unknown_failures_are_retryable(client: Client, failure: str) -> None:
    client.command(
        f"CREATE TABLE IF NOT EXISTS {DB}.few_parts (s String) ENGINE = MergeTree ORDER BY s "
        "SETTINGS parts_to_throw_insert = 1, parts_to_delay_insert = 0"
    )
    operation, code = RETRYABLE[failure]
    with pytest.raises(RetryableStorageError) as caught, storage_errors():
        operation(client)
    assert getattr(caught.value.__cause__, "code", None) == code
    assert client.command("SELECT getSetting('readonly')") == 0  # per-call settings did not stick


def test_the_callers_own_bugs_are_not_storage_errors(client: Client) -> None:
    columns: dict[str, list[str]] = {}
    with pytest.raises(KeyError), storage_errors():
        client.insert(VALUES, [["a"]], column_names=columns["s"])
    with pytest.raises(ValueError, match="invalid literal"), storage_errors():
        client.insert(VALUES, [["a", int("not a number")]], column_names=["s", "i64"])


def test_classify_wraps_and_chains() -> None:
    refused = classify(DataError("Invalid None value in non-Nullable column"))
    assert isinstance(refused, RejectedDataError) and isinstance(refused.__cause__, DataError)
    assert str(refused) == "ClickHouse DataError: Invalid None value in non-Nullable column"
    unknown = classify(RuntimeError("Code: 999999. something new"))
    assert isinstance(unknown, RetryableStorageError)
    assert str(unknown) == "ClickHouse error (code 999999): Code: 999999. something new"
    assert isinstance(classify(ConnectionResetError("reset by peer")), RetryableStorageError)
