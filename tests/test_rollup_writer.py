"""The worker writes the minute rollup (streams/rollup.py, sql/ddsketch_state.py, migration 0010).

ClickHouse states encoded in numpy equal the ones ClickHouse computes; the rollup rows equal what
the retired ``spans_minute_mv`` made of the same raw rows (its SELECT, with 0012's first-attempt
counters, is sql/statements/minute_rollup_select.sql, which the Kafka-engine peer also uses); and through the real pipeline on chDB
every level (minute, hour, day) counts each stored span exactly once for late spans, a replayed
batch, a batch split by isolation and a crash between the raw insert and the rollup insert.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client

from spanline.simulator.workload import WorkloadConfig
from spanline.sql.ddsketch_state import clickhouse_keys, encode_states
from spanline.sql.statements import render_statement
from spanline.streams.pipeline import IngestPipeline
from spanline.streams.pricing import PriceCatalog
from spanline.streams.rollup import minute_rollup
from spanline.streams.sinks import ClickHouseSpanSink, StoredRange
from spanline.streams.windows.state import PartitionWindows
from spanline.windows.records import encode
from tests.support.chdb import migrated_chdb
from tests.support.rows import worker_rows
from tests.test_isolation import FAST_RETRY, Event, KafkaRecord, Outbox, span

DB = "rollup_writer"
TOPIC = "spans"
QUANTILES = "0.01, 0.5, 0.95, 0.99"
START = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
#: The rollup's columns after the grain, and the grain.
GRAIN = ("tenant_id", "service", "feature", "provider", "model_requested", "route", "kind", "minute")
LEVELS = {"spans_minute": "minute", "spans_hour": "hour", "spans_day": "day"}
RAW_BUCKETS = {
    "minute": "toStartOfMinute(start_time)",
    "hour": "toStartOfHour(start_time)",
    "day": "toDate(start_time)",
}


@pytest.fixture(scope="module")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One chDB path for the module: a process may open only one (each test has its database)."""
    return tmp_path_factory.mktemp("rollup-writer") / "chdb"


@pytest.fixture(scope="module")
def client(chdb_path: Path) -> Iterator[Client]:
    with migrated_chdb(chdb_path, DB) as chdb:
        yield chdb


def test_states_encoded_in_numpy_equal_the_states_clickhouse_computes(client: Client) -> None:
    """Every kind of value: sub-µs, µs to hours, huge, zero, negative; several groups, one empty."""
    generator = np.random.default_rng(7)
    values = np.concatenate(
        [
            generator.lognormal(8, 2, 5000),
            generator.uniform(0, 1, 300),
            [0.0, 0.0, -3.5, -0.25, -1e6, 1e15, 1e-300, 5e-324],
        ]
    )
    groups = generator.integers(0, 5, len(values))  # group 5 gets no value: an empty sketch
    sign, key = clickhouse_keys(values)
    bins = pd.DataFrame({"group": groups, "sign": sign, "key": key}).value_counts().reset_index()
    states = encode_states(
        bins["group"].to_numpy(), bins["sign"].to_numpy(), bins["key"].to_numpy(), bins["count"].to_numpy(), 6
    )
    client.command(
        f"CREATE TABLE IF NOT EXISTS {DB}.states (g UInt8, s AggregateFunction(quantilesDD({QUANTILES}), Float64)) ENGINE = Memory"
    )
    client.insert_arrow(
        f"{DB}.states", pa.table({"g": pa.array(range(6), pa.uint8()), "s": pa.array(states, pa.binary())})
    )
    client.command(f"CREATE TABLE IF NOT EXISTS {DB}.values (g UInt8, v Float64) ENGINE = Memory")
    client.insert_arrow(f"{DB}.values", pa.table({"g": pa.array(groups, pa.uint8()), "v": pa.array(values)}))
    ours = client.query(
        f"SELECT g, quantilesDDMerge({QUANTILES})(s) FROM {DB}.states GROUP BY g ORDER BY g"
    ).result_rows
    theirs = client.query(f"SELECT g, quantilesDD({QUANTILES})(v) FROM {DB}.values GROUP BY g ORDER BY g").result_rows
    assert ours[:5] == theirs
    assert all(np.isnan(ours[5][1]))
    # merged with a state ClickHouse built itself, as the hour and day views merge them
    merged = client.query(
        f"SELECT quantilesDDMerge({QUANTILES})(s) FROM (SELECT s FROM {DB}.states UNION ALL "
        f"SELECT quantilesDDState({QUANTILES})(v) AS s FROM {DB}.values)"
    ).result_rows[0][0]
    doubled = client.query(
        f"SELECT quantilesDD({QUANTILES})(v) FROM (SELECT v FROM {DB}.values UNION ALL SELECT v FROM {DB}.values)"
    ).result_rows[0][0]
    assert merged == doubled


def test_the_rollup_equals_what_the_retired_view_made_of_the_same_rows(client: Client) -> None:
    rows = worker_rows(WorkloadConfig(start=START, duration_s=600, requests_per_s=5))
    client.insert_df(f"{DB}.spans", rows, settings={"insert_deduplication_token": "reference"})
    client.command(f"CREATE TABLE IF NOT EXISTS {DB}.by_view AS {DB}.spans_minute")
    client.command(f"INSERT INTO {DB}.by_view {render_statement('minute_rollup_select', database=DB)}")
    client.command(f"CREATE TABLE IF NOT EXISTS {DB}.by_worker AS {DB}.spans_minute")
    client.insert_arrow(f"{DB}.by_worker", minute_rollup(rows).table)
    columns = [name for name in client.query(f"SELECT * FROM {DB}.by_worker LIMIT 0").column_names]
    shown = ", ".join(f"finalizeAggregation({name})" if name.endswith("_sketch") else name for name in columns)
    by_view = client.query(f"SELECT {shown} FROM {DB}.by_view ORDER BY {', '.join(GRAIN)}").result_rows
    by_worker = client.query(f"SELECT {shown} FROM {DB}.by_worker ORDER BY {', '.join(GRAIN)}").result_rows
    assert len(by_view) == len(by_worker) > 100
    for view_row, worker_row in zip(by_view, by_worker, strict=True):
        for name, view_value, worker_value in zip(columns, view_row, worker_row, strict=True):
            assert same(worker_value, view_value), (name, view_row[:8], worker_value, view_value)


def same(ours: Any, theirs: Any) -> bool:
    """Equal, floats up to summation order (the view and numpy add costs in different orders);
    sketch quantiles exactly (same bins), NaN for an empty sketch."""
    if isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(same(ours[key], theirs[key]) for key in theirs)
    if isinstance(theirs, list):
        return len(ours) == len(theirs) and all(same(a, b) for a, b in zip(ours, theirs, strict=True))
    if isinstance(theirs, float):
        return (np.isnan(ours) and np.isnan(theirs)) or bool(ours == pytest.approx(theirs, rel=1e-12, abs=1e-15))
    return bool(ours == theirs)


# --- through the real pipeline and sink -------------------------------------------------------


class Crash(BaseException):
    """The worker process dying: not an Exception, so no retry or hold catches it."""


class CrashBeforeRollup(ClickHouseSpanSink):
    """The real sink, except that the process dies right after the first raw insert stored."""

    def write_rollup(self, stored: StoredRange) -> Any:
        raise Crash


@dataclass(frozen=True)
class Store:
    """A test's own database in the module's chDB path."""

    path: Path
    database: str


@pytest.fixture
def store(chdb_path: Path, request: pytest.FixtureRequest) -> Store:
    return Store(chdb_path, f"{DB}_{request.node.name.removeprefix('test_')[:40]}")


def run(sink: ClickHouseSpanSink, events: list[Event]) -> Outbox:
    outbox = Outbox()

    async def load_recent(partition: int, offset: int, recent: Any) -> None:
        return None

    pipeline = IngestPipeline(
        TOPIC,
        sink,
        PriceCatalog.load(None),
        outbox.send,
        resend_window_s=3600,
        load_recent=load_recent,
        retry=FAST_RETRY,
    )
    asyncio.run(pipeline.handle(events, outbox.ack))
    return outbox


def with_sink(store: Store, events: list[Event], kind: type[ClickHouseSpanSink] = ClickHouseSpanSink) -> Outbox:
    sink = kind(f"chdb://{store.path}", store.database, TOPIC, "topic-id", 30, FAST_RETRY)
    try:
        return run(sink, events)
    finally:
        sink.close()


def query(store: Store, sql: str) -> list[tuple[Any, ...]]:
    sink = ClickHouseSpanSink(f"chdb://{store.path}", store.database, TOPIC, "topic-id", 30, FAST_RETRY)
    try:
        rows = asyncio.run(sink.run(sink.call, lambda client: client.query(sql.format(db=store.database)).result_rows))
        return list(rows)
    finally:
        sink.close()


def levels_and_raw(store: Store) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, list[tuple[Any, ...]]]]:
    """Per level, (bucket, spans, input tokens, cost) from the rollup and from the raw rows."""
    rollups, raw = {}, {}
    for table, bucket in LEVELS.items():
        rollups[bucket] = query(
            store,
            f"SELECT toString({bucket}), sum(spans), sum(input_tokens), round(sum(cost_usd), 9) "
            f"FROM {{db}}.{table} GROUP BY {bucket} ORDER BY {bucket}",
        )
        raw[bucket] = query(
            store,
            f"SELECT toString({RAW_BUCKETS[bucket]}) AS b, count(), sum(input_tokens), round(sum(cost_usd), 9) "
            "FROM {db}.spans GROUP BY b ORDER BY b",
        )
    return rollups, raw


def events_of(spans: list[dict[str, Any]], per_message: int, partition: int = 0, first: int = 0) -> list[Event]:
    return [
        Event(KafkaRecord(partition, first + index, (), 1.0), orjson.dumps(spans[start : start + per_message]))
        for index, start in enumerate(range(0, len(spans), per_message))
    ]


def spans_over_an_hour(count: int, id_from: int = 0) -> list[dict[str, Any]]:
    """LLM spans every 97 s from 10:00, crossing hours (and with 900+ spans a day)."""
    return [
        span(n, start_time=(START + timedelta(seconds=97 * n)).isoformat()) for n in range(id_from, id_from + count)
    ]


def test_a_late_span_lands_in_its_minute_at_every_level(store: Store) -> None:
    """The rollup is written per stored block, with no window: a span stored an hour after its
    minute adds to that minute's row, and to its hour and day."""
    early = spans_over_an_hour(60)
    late = [
        span(1000, start_time=START.isoformat()),
        span(1001, start_time=(START + timedelta(seconds=30)).isoformat()),
    ]
    with_sink(store, events_of(early, 10))
    with_sink(store, events_of(late, 2, first=6))
    rollups, raw = levels_and_raw(store)
    assert rollups == raw
    assert rollups["minute"][0][:2] == ("2026-11-22 10:00:00", 3)


def test_a_replayed_batch_adds_nothing_at_any_level(store: Store) -> None:
    events = events_of(spans_over_an_hour(80), 10)
    with_sink(store, events)
    first = levels_and_raw(store)
    with_sink(store, events)  # redelivered: the ledger re-cuts the batch, the tokens repeat
    assert levels_and_raw(store) == first
    assert first[0] == first[1] and first[0]["minute"]


def test_a_batch_split_by_isolation_is_rolled_up_once_and_so_is_its_replay(store: Store) -> None:
    """Rows ClickHouse refuses split the raw insert into ranges with their own tokens; each stored
    range gets its rollup, and a replay re-forms the same ranges and tokens."""
    query(store, "ALTER TABLE {db}.spans ADD CONSTRAINT no_poison CHECK service != 'refused'")
    spans = spans_over_an_hour(30)
    spans[4]["service"] = spans[17]["service"] = "refused"
    events = events_of(spans, 6)
    letters = with_sink(store, events).letters
    assert sorted(letter["dedup_key"] for letter in letters) == ["spans/0/0#4", "spans/0/2#5"]
    rollups, raw = levels_and_raw(store)
    assert rollups == raw and sum(row[1] for row in raw["minute"]) == 28
    with_sink(store, events)
    assert levels_and_raw(store) == (rollups, raw)


def test_a_crash_between_the_raw_insert_and_the_rollup_is_made_good_by_the_replay(store: Store) -> None:
    events = events_of(spans_over_an_hour(50), 10)
    with pytest.raises(Crash):
        with_sink(store, events, CrashBeforeRollup)
    rollups, raw = levels_and_raw(store)
    assert sum(row[1] for row in raw["minute"]) == 50 and rollups == {"minute": [], "hour": [], "day": []}
    outbox = with_sink(store, events)  # the restarted worker: same batch, same tokens
    rollups, raw = levels_and_raw(store)
    assert rollups == raw and sum(row[1] for row in raw["minute"]) == 50
    assert outbox.acked == [(0, offset) for offset in range(5)]


def test_windows_fed_the_rollups_partials_equal_windows_that_aggregate_the_rows() -> None:
    """The pipeline hands each rolled-up block's partials to the minute windows instead of
    aggregating the rows again; with late rows (minutes already closed) among them too."""
    rows = worker_rows(WorkloadConfig(start=START, duration_s=900, requests_per_s=3)).sort_values("start_time")
    held_back = rows.iloc[:: len(rows) // 30]  # arrive with the last batch: their minutes have closed
    kept = rows.drop(held_back.index)
    chunks = [kept.iloc[block] for block in np.array_split(np.arange(len(kept)), 12)]
    chunks[-1] = pd.concat([chunks[-1], held_back])
    by_rows, by_partials = PartitionWindows(0, 60_000), PartitionWindows(0, 60_000)
    emitted: tuple[list[bytes], list[bytes]] = ([], [])
    offset = 0
    for chunk in chunks:
        chunk = chunk.assign(kafka_offset=np.arange(offset, offset + len(chunk)))
        offset += len(chunk)
        by_rows.add(chunk)
        by_partials.add(chunk, minute_rollup(chunk).partials)
        assert by_rows.late_spans == by_partials.late_spans
        late = by_rows.late_spans
        emitted[0].extend(map(encode, by_rows.close()))
        emitted[1].extend(map(encode, by_partials.close()))
    assert late > 0 and len(emitted[0]) > 3
    assert emitted[0] == emitted[1]


def worker_process(path: str, database: str, dies: bool) -> None:
    """A worker's life in its own process: migrate on first use, store the batches; then die
    (SIGKILL) with the chDB session still open, or print every level and the raw counts."""
    store = Store(Path(path), database)
    sink = ClickHouseSpanSink(f"chdb://{store.path}", store.database, TOPIC, "topic-id", 30, FAST_RETRY)
    run(sink, REPLAYED)
    if dies:
        os.kill(os.getpid(), signal.SIGKILL)
    sink.close()
    print(orjson.dumps(levels_and_raw(store)).decode())


REPLAYED = events_of(spans_over_an_hour(40), 10)


def in_a_process(store: Store, dies: bool) -> subprocess.CompletedProcess[bytes]:
    """A process of its own: chDB admits one data path per process, and this one holds the module's."""
    code = f"from tests.test_rollup_writer import *; worker_process({str(store.path)!r}, {store.database!r}, {dies})"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).parent.parent, capture_output=True, timeout=300
    )


def test_a_batch_replayed_by_the_next_process_after_the_migrating_one_died_is_counted_once(tmp_path: Path) -> None:
    """Views that a migration altered in place (ALTER ... MODIFY QUERY) derived other
    deduplication tokens in the process that altered them than after a restart: the replay added
    the batch to spans_hour and spans_day again (0012 recreates its views instead)."""
    store = Store(tmp_path / "chdb", "replayed_after_migration")
    died = in_a_process(store, dies=True)
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()[-2000:]
    replayed = in_a_process(store, dies=False)  # the next worker: the ledger re-cuts the batches, tokens repeat
    assert replayed.returncode == 0, replayed.stderr.decode()[-2000:]
    rollups, raw = orjson.loads(replayed.stdout.splitlines()[-1])
    assert sum(row[1] for row in raw["minute"]) == 40 and rollups == raw
