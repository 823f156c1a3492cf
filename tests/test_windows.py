"""Stream windows without Kafka: sketches, aggregation, watermarks, records, merger, recovery.

Rows come from the workload generator through the worker's own transformation (process_batch);
recovery runs against a real chDB with the worker's ledger and insert settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from ddsketch import DDSketch

from spanline.simulator.workload import WorkloadConfig
from spanline.sql.migrate import apply_migrations
from spanline.streams.batcher import Batch, Message
from spanline.streams.ledger import Ledger
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch
from spanline.streams.sinks import DEDUP_SETTINGS
from spanline.streams.windows.changelog import Changelog
from spanline.streams.windows.manager import WindowManager
from spanline.streams.windows.state import PartitionWindows
from spanline.windows.aggregate import aggregate, combine
from spanline.windows.merger import MinuteFigures, MinuteMerger
from spanline.windows.records import decode, encode
from spanline.windows.sketches import bucket_keys, build_sketch, sketch_state
from tests.support import window_expectations as expect
from tests.support.chdb import migrated_chdb

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TOPIC, TOPIC_ID, DB = "spans", "topic-id-1", "windows"


def _sketch_from_values(values: np.ndarray) -> DDSketch:
    sign, key = bucket_keys(values)
    frame = pd.DataFrame({"sign": sign, "key": key}).value_counts().reset_index(name="count")
    return build_sketch(frame["sign"], frame["key"], frame["count"], values.sum(), values.min(), values.max())


def test_vectorised_bins_equal_the_per_value_sketch() -> None:
    rng = np.random.default_rng(3)
    gamma = DDSketch(0.01)._mapping.gamma
    values = np.concatenate(
        [
            rng.lognormal(5, 3, 200_000),
            rng.uniform(0, 2, 50_000),
            np.arange(0, 5000, dtype=float),
            gamma ** np.arange(-200, 400, dtype=float),  # exact bucket boundaries
            -rng.lognormal(2, 1, 1000),
            np.zeros(100),
            [1e-310, 5e-324],  # negatives, zeros, subnormals
        ]
    )
    reference = DDSketch(0.01)
    for value in values.tolist():
        reference.add(value)
    vectorised = sketch_state(_sketch_from_values(values))
    expected = sketch_state(reference)
    assert vectorised.pop("sum") == pytest.approx(expected.pop("sum"), rel=1e-12)
    assert vectorised == expected
    for quantile in (0.01, 0.5, 0.95, 0.99):
        assert _sketch_from_values(values).get_quantile_value(quantile) == reference.get_quantile_value(quantile)


@pytest.fixture(scope="module")
def chunks() -> list[list[dict[str, object]]]:
    """Five simulated minutes (tests/support/window_expectations.py: every counter has something to count)."""
    return expect.workload(WorkloadConfig(start=START, duration_s=300, requests_per_s=4))


@pytest.fixture(scope="module")
def batches(chunks: list[list[dict[str, object]]]) -> list[tuple[Batch, pd.DataFrame]]:
    """The chunks as Kafka messages of partition 0, cut into batches of 20, processed by the worker."""
    messages = [Message(0, offset, orjson.dumps(chunk), "test") for offset, chunk in enumerate(chunks)]
    catalog = PriceCatalog.load()
    out = []
    for first in range(0, len(messages), 20):
        cut = messages[first : first + 20]
        batch = Batch(0, cut[0].offset, cut[-1].offset, cut, False)
        rows = process_batch(batch, TOPIC, catalog).rows
        assert rows is not None
        out.append((batch, rows))
    return out


@pytest.fixture(scope="module")
def rows(batches: list[tuple[Batch, pd.DataFrame]]) -> pd.DataFrame:
    return pd.concat([rows for _, rows in batches], ignore_index=True)


def _run_windows(batches: list[tuple[Batch, pd.DataFrame]], lateness_ms: int = 60_000) -> list[bytes]:
    state = PartitionWindows(0, lateness_ms)
    values = []
    for _, rows in batches:
        state.add(rows)
        values += [encode(record) for record in state.close()]
    state.advance(state.high_ms + lateness_ms + 120_000)  # the end of the stream: close everything
    return values + [encode(record) for record in state.close()]


def test_windows_over_many_batches_equal_a_pandas_recomputation(
    batches: list[tuple[Batch, pd.DataFrame]], rows: pd.DataFrame
) -> None:
    spans = expect.flags(rows)
    assert (spans[expect.COUNTS].sum() > 0).all(), spans[expect.COUNTS].sum()[lambda s: s == 0]
    merger = MinuteMerger(1)
    figures = [figure for value in _run_windows(batches, lateness_ms=10 * 60_000) for figure in merger.add(value)]
    data = [figure for figure in figures if len(figure.frame)]
    minutes = sorted(spans["minute"].unique())
    assert [figure.minute for figure in data] == [m.to_pydatetime() for m in minutes] and len(minutes) >= 5
    assert all(figure.late_spans == 0 for figure in figures)
    expect.assert_figures_equal_pandas(data, rows)


def test_combining_partials_equals_aggregating_everything_at_once(rows: pd.DataFrame) -> None:
    whole = aggregate(rows)
    pieces = combine([aggregate(rows.iloc[i : i + 700]) for i in range(0, len(rows), 700)])
    order = lambda p: p.groups.assign(**p.counters).sort_values(list(expect.KEYS)).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(order(pieces), order(whole), check_exact=False, rtol=1e-12)


def _rows_at(seconds: list[float], offsets: list[int], template: pd.DataFrame) -> pd.DataFrame:
    rows = template.iloc[[0] * len(seconds)].reset_index(drop=True).copy()
    rows["start_time"] = pd.to_datetime([START + timedelta(seconds=s) for s in seconds], utc=True).astype(
        "datetime64[ms, UTC]"
    )
    rows["kafka_offset"] = offsets
    return rows


def test_watermark_closes_minutes_late_spans_are_counted_and_gaps_reported(rows: pd.DataFrame) -> None:
    state = PartitionWindows(0, lateness_ms=30_000)
    state.add(_rows_at([10, 50, 70], [0, 1, 2], rows))
    assert state.close() == []  # watermark 12:00:40: minute 0 is still open
    state.add(_rows_at([95], [3], rows))  # watermark 12:01:05 -> minute 0 closes
    [first] = state.close()
    assert (first.minute - START.timestamp()) / 60 == 0 and first.spans == 2 and first.late_spans == 0
    state.add(_rows_at([20, 100, 290], [4, 5, 6], rows))  # 12:00:20 is late; 12:04:50 moves the watermark to 12:04:20
    records = state.close()
    assert [(r.minute - START.timestamp()) / 60 for r in records] == [
        1,
        3,
    ]  # minute 2 had no spans; 3 is reported empty
    # the late span counts in minute 1, the minute open when it came, and is named late there
    assert [r.spans for r in records] == [4, 0] and [r.late_spans for r in records] == [1, 0]
    assert state.frontier == START.timestamp() + 4 * 60 and state.open_minutes == [START.timestamp() + 4 * 60]
    assert records[-1].through_offset == 6


def test_redelivered_offsets_already_emitted_are_not_late_again(rows: pd.DataFrame) -> None:
    frontier = int(START.timestamp()) + 120
    state = PartitionWindows(0, 30_000, frontier=frontier, high_ms=frontier * 1000 + 40_000, replay_through=5)
    state.add(_rows_at([30, 130, 135], [4, 5, 6], rows))  # offsets 4-5 were accounted for by emitted records
    assert state.late_spans == 0 and state.open_minutes == [frontier]
    state.add(_rows_at([31], [7], rows))
    assert state.late_spans == 1


def _spans_at(seconds: list[float], offsets: list[int], template: pd.DataFrame, *, roots: bool) -> pd.DataFrame:
    """Spans at these seconds after START: trace roots, or children of a trace (a parent id)."""
    return _rows_at(seconds, offsets, template).assign(parent_span_id="" if roots else "a-parent")


def _figures(merger: MinuteMerger, state: PartitionWindows) -> list[MinuteFigures]:
    return [figure for record in state.close() for figure in merger.add(encode(record))]


def test_a_minute_every_partition_has_passed_is_evaluated_before_its_lateness(rows: pd.DataFrame) -> None:
    """Roots 11 s past the end of minute 0 on both partitions close it (grace 10 s), with 120 s of
    lateness still to run; a child span past it does not (its trace may still be running), and
    without a grace the lateness holds the minute as before."""
    merger = MinuteMerger(2)
    early = [PartitionWindows(p, 120_000, grace_ms=10_000) for p in (0, 1)]
    lateness_only = PartitionWindows(0, 120_000)
    for state in (*early, lateness_only):
        state.add(_spans_at([30], [0], rows, roots=True))
        state.add(_spans_at([75], [1], rows, roots=False))  # a child: the root frontier stays at 12:00:30
        assert state.close() == []
    for state in (*early, lateness_only):
        state.add(_spans_at([71], [2], rows, roots=True))
    assert _figures(merger, early[0]) == []  # partition 1 has not reported yet
    [minute] = _figures(merger, early[1])
    assert minute.minute == START and int(minute.frame["spans"].sum()) == 2 and minute.late_spans == 0
    assert lateness_only.close() == []  # lateness alone: 12:01:15 - 120 s closes nothing


def test_a_partition_behind_holds_an_early_minute_back(rows: pd.DataFrame) -> None:
    merger = MinuteMerger(2)
    ahead, behind = (PartitionWindows(p, 120_000, grace_ms=10_000) for p in (0, 1))
    ahead.add(_spans_at([30, 95], [0, 1], rows, roots=True))
    behind.add(_spans_at([30, 65], [0, 1], rows, roots=True))  # 5 s past the minute: inside the grace
    assert _figures(merger, ahead) == [] and _figures(merger, behind) == []
    assert (merger.complete_before or START) <= START  # minute 0 held, as a lagging partition holds minutes
    behind.add(_spans_at([72], [2], rows, roots=True))
    assert [f.minute for f in _figures(merger, behind)] == [START]


def test_a_span_late_for_an_evaluated_minute_counts_in_the_next_one(rows: pd.DataFrame) -> None:
    """A long call of a trace still running when minute 0 was evaluated arrives afterwards: the
    figures of minute 1 (the one then open) count it, and say it was late; nothing is lost."""
    merger = MinuteMerger(2)
    states = [PartitionWindows(p, 120_000, grace_ms=10_000) for p in (0, 1)]
    for state in states:
        state.add(_spans_at([30, 71], [0, 1], rows, roots=True))
    evaluated = [f for state in states for f in _figures(merger, state)]
    assert [f.minute for f in evaluated] == [START]
    late = _spans_at([40, 45], [2, 3], rows, roots=False).assign(status="error", error_type="server_error")
    states[0].add(late)
    assert states[0].late_spans == 2 and states[0].open_minutes == [int(START.timestamp()) + 60]
    for state in states:
        state.add(_spans_at([131], [4], rows, roots=True))
    evaluated += [f for state in states for f in _figures(merger, state)]
    assert [f.minute - START for f in evaluated] == [timedelta(0), timedelta(minutes=1)]
    assert [int(f.frame["spans"].sum()) for f in evaluated] == [2, 2 + 2] and evaluated[1].late_spans == 2
    assert int(evaluated[1].frame["errors"].sum()) >= 2  # the late failures count in the alert rates


def test_a_record_survives_encoding(batches: list[tuple[Batch, pd.DataFrame]]) -> None:
    state = PartitionWindows(2, 0)
    state.add(batches[0][1])
    state.advance(state.high_ms + 120_000)
    for record in state.close():
        again = decode(encode(record))
        assert again.key == record.key == f"2:{record.minute}".encode()
        assert encode(again) == encode(record)


def test_merger_waits_for_every_partition_and_drops_duplicates(batches: list[tuple[Batch, pd.DataFrame]]) -> None:
    left, right = PartitionWindows(0, 0), PartitionWindows(1, 0)
    for _, rows in batches[:7]:
        left.add(rows)
    for _, rows in batches[4:12]:
        right.add(rows)
    left_values = [encode(r) for r in left.close()]
    right_values = [encode(r) for r in right.close()]
    merger = MinuteMerger(2)
    assert [f for value in left_values for f in merger.add(value)] == []  # partition 1 has not reported yet
    merged = [f for value in right_values for f in merger.add(value)]
    complete = min(decode(left_values[-1]).minute, decode(right_values[-1]).minute)
    assert [f.minute.timestamp() for f in merged] == sorted(
        {decode(v).minute for v in left_values + right_values if decode(v).minute <= complete}
    )
    assert all(merger.add(value) == [] for value in left_values + right_values)  # re-emitted: ignored
    with pytest.raises(ValueError, match="partition 2"):
        MinuteMerger(2).add(
            encode(decode(left_values[0]).__class__(**{**decode(left_values[0]).__dict__, "partition": 2}))
        )


def test_a_partition_that_never_reports_stops_holding_minutes_back(batches: list[tuple[Batch, pd.DataFrame]]) -> None:
    clock = [0.0]
    state = PartitionWindows(0, 0)
    merger = MinuteMerger(2, stall_s=120, clock=lambda: clock[0])
    for _, rows in batches[:5]:
        state.add(rows)
    first = [f for record in state.close() for f in merger.add(encode(record))]
    assert first == []  # partition 1 may still be starting
    clock[0] = 121.0
    state.advance(state.high_ms + 60_000)
    released = [f for record in state.close() for f in merger.add(encode(record))]
    assert released and any(len(f.frame) for f in released)
    assert merger.silent_reporters() == []  # never having traffic is not an incident


def test_a_lagging_partition_holds_minutes_back_and_loses_nothing(batches: list[tuple[Batch, pd.DataFrame]]) -> None:
    """Partition 1 runs 45 event-minutes behind partition 0 (a backlog or an uneven replay) but
    keeps reporting: no minute completes without it, and every span of both reaches the figures."""
    clock = [0.0]
    ahead, behind = PartitionWindows(0, 0), PartitionWindows(1, 0)
    for _, rows in batches:
        ahead.add(rows)
        behind.add(rows)
    merger = MinuteMerger(2, stall_s=120, clock=lambda: clock[0])
    ahead.advance(ahead.high_ms + 45 * 60_000)
    assert [f for record in ahead.close() for f in merger.add(encode(record))] == []
    released = []
    for record in behind.close():  # one record a wall second: slow, but alive
        clock[0] += 1
        released += merger.add(encode(record))
    behind.advance(behind.high_ms + 45 * 60_000)
    released += [f for record in behind.close() for f in merger.add(encode(record))]
    spans = sum(len(rows) for _, rows in batches)
    assert sum(int(f.frame["spans"].sum()) for f in released) == 2 * spans
    assert merger.late_records == 0


def test_a_partition_that_goes_silent_is_named_and_stops_holding_minutes_back(
    batches: list[tuple[Batch, pd.DataFrame]],
) -> None:
    clock = [0.0]
    alive, dead = PartitionWindows(0, 0), PartitionWindows(1, 0)
    merger = MinuteMerger(2, stall_s=120, clock=lambda: clock[0])
    for _, rows in batches[:3]:
        dead.add(rows)
    for record in dead.close():
        merger.add(encode(record))
    for _, rows in batches:
        alive.add(rows)
    held = [f for record in alive.close() for f in merger.add(encode(record))]
    clock[0] = 200.0
    alive.advance(alive.high_ms + 60_000)
    released = [f for record in alive.close() for f in merger.add(encode(record))]
    assert merger.silent_reporters() == [1]
    assert released and max(f.minute for f in released) > max((f.minute for f in held), default=released[0].minute)
    for _, rows in batches[3:]:
        dead.add(rows)
    for record in dead.close():  # back, too late for the minutes completed without it
        merger.add(encode(record))
    assert merger.late_records > 0 and merger.silent_reporters() == []


# --- manager and recovery against chDB -------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with migrated_chdb(tmp_path_factory.mktemp("windows") / "chdb", DB) as chdb:
        yield chdb


class Recorder:
    """The worker's emission path with a list in place of the metrics topic."""

    def __init__(self, client: Any, database: str, clock: list[float]) -> None:
        self.client, self.sent = client, []
        self.changelog = Changelog(database, TOPIC, TOPIC_ID)
        self.clock = clock

    def manager(self, lateness_s: float = 60, idle_s: float = 5, grace_s: float | None = None) -> WindowManager:
        async def storage(function: Any, *args: Any) -> Any:
            return function(self.client, *args)

        async def publish(messages: list[tuple[bytes, bytes]]) -> None:
            self.sent += messages

        return WindowManager(
            self.changelog, storage, publish, lateness_s, idle_s, clock=lambda: self.clock[0], grace_s=grace_s
        )


def _store(client: Any, database: str, batch: Batch, rows: pd.DataFrame) -> None:
    """What ClickHouseSpanSink.write does: ledger intent, then the insert with its token."""
    token = batch.token(TOPIC, TOPIC_ID)
    Ledger(client, database, TOPIC, TOPIC_ID).record(batch.partition, batch.first_offset, batch.last_offset, token)
    client.insert_df(f"{database}.spans", rows, settings={**DEDUP_SETTINGS, "insert_deduplication_token": token})


def _drive(
    recorder: Recorder, manager: WindowManager, batches: list[tuple[Batch, pd.DataFrame]], resume_at: int | None = None
) -> None:
    async def run() -> None:
        if resume_at is not None:
            await manager.resume(0, resume_at)
        elif manager.partition(0) is None:
            await manager.resume(0, batches[0][0].first_offset)
        for batch, rows in batches:
            _store(recorder.client, recorder.changelog.database, batch, rows)
            manager.absorb(0, rows)
            await manager.emit_closed(0)

    asyncio.run(run())


@pytest.mark.parametrize("grace_s", [None, 10.0])
@pytest.mark.parametrize("crash_after", [3, 7])
def test_a_restarted_partition_rebuilds_its_windows_from_clickhouse_without_double_counting(
    client: Any, batches: list[tuple[Batch, pd.DataFrame]], rows: pd.DataFrame, crash_after: int, grace_s: float | None
) -> None:
    """With a grace, minutes close early (the workload sends each trace whole at its root's
    second, so early closing makes no span late) and the rebuilt root high closes them alike."""
    database = f"{DB}_crash{crash_after}_{grace_s is not None}"
    apply_migrations(client, database, ttl_days=30)
    clock = [0.0]
    before = Recorder(client, database, clock)
    # offsets of the last two batches stay uncommitted
    _drive(before, before.manager(grace_s=grace_s), batches[: crash_after + 2])
    emitted_before = len(before.sent)
    assert emitted_before > 0
    after = Recorder(client, database, clock)
    manager = after.manager(grace_s=grace_s)
    _drive(after, manager, batches[crash_after:], resume_at=batches[crash_after][0].first_offset)  # redelivered
    clock[0] += 300  # the stream ends: the idle partition closes its last minutes
    asyncio.run(manager.tick())
    merger = MinuteMerger(1)
    figures = [f for _, value in before.sent + after.sent for f in merger.add(value)]
    assert all(figure.late_spans == 0 for figure in figures)
    expect.assert_figures_equal_pandas([f for f in figures if len(f.frame)], rows)
    stored = client.query(f"SELECT count(), uniqExact(minute) FROM {database}.metric_windows").result_rows[0]
    assert stored[0] == stored[1] == len({value for _, value in before.sent + after.sent})


def test_an_idle_partition_advances_on_wall_clock_and_with_the_others(
    client: Any, batches: list[tuple[Batch, pd.DataFrame]]
) -> None:
    database = f"{DB}_idle"
    apply_migrations(client, database, ttl_days=30)
    clock = [100.0]
    recorder = Recorder(client, database, clock)
    manager = recorder.manager(lateness_s=60, idle_s=5, grace_s=10)
    _drive(recorder, manager, batches[:3])
    state = manager.partition(0)
    assert state is not None and state.open_minutes and state.root_high_ms is not None
    high, root_high = state.high_ms, state.root_high_ms
    clock[0] += 4
    asyncio.run(manager.tick())
    assert state.high_ms == high  # not idle yet
    clock[0] += 200
    asyncio.run(manager.tick())
    assert state.high_ms == high + 204_000 and state.root_high_ms == root_high + 204_000
    assert state.open_minutes == []
    minutes = [decode(value).minute for _, value in recorder.sent]
    assert minutes == sorted(set(minutes)) and minutes[-1] + 60 == state.frontier


def test_a_partition_with_backlog_waits_while_the_worker_is_busy(
    client: Any, batches: list[tuple[Batch, pd.DataFrame]]
) -> None:
    database = f"{DB}_backlog"
    apply_migrations(client, database, ttl_days=30)
    clock = [100.0]
    recorder = Recorder(client, database, clock)
    backlog = {"partition": True}

    async def storage(function: Any, *args: Any) -> Any:
        return function(client, *args)

    async def publish(messages: list[tuple[bytes, bytes]]) -> None:
        recorder.sent += messages

    manager = WindowManager(
        recorder.changelog,
        storage,
        publish,
        60,
        5,
        caught_up=lambda partition, offset: not backlog["partition"],
        clock=lambda: clock[0],
    )
    _drive(recorder, manager, batches[:3])
    high = manager.partition(0).high_ms  # type: ignore[union-attr]

    async def another_partition_receives() -> None:
        await manager.resume(7, 0)
        manager.absorb(7, batches[0][1])
        await manager.emit_closed(7)

    clock[0] += 30
    asyncio.run(another_partition_receives())  # the worker is busy with partition 7
    asyncio.run(manager.tick())
    assert manager.partition(0).high_ms == high  # type: ignore[union-attr]  # waiting for its turn, not idle
    backlog["partition"] = False
    asyncio.run(manager.tick())
    assert manager.partition(0).high_ms == high + 30_000  # type: ignore[union-attr]


def test_late_spans_not_yet_emitted_are_rebuilt_into_the_frontier_minute(
    client: Any, batches: list[tuple[Batch, pd.DataFrame]], rows: pd.DataFrame
) -> None:
    """Minutes closed early, then children of a closed minute arrive (late) and the worker
    restarts before the frontier minute is emitted: the rebuilt partition counts them in that
    minute exactly as the partition that never stopped does."""
    last = batches[-1][0].last_offset
    late = _spans_at([61, 62, 63], [last + 1] * 3, rows, roots=False)
    closing = _spans_at([3600], [last + 2], rows, roots=True)  # closes every minute before 13:00
    late_batch = (Batch(0, last + 1, last + 1, [], False), late)
    closing_batch = (Batch(0, last + 2, last + 2, [], False), closing)
    emitted: list[list[tuple[bytes, bytes]]] = []
    for crash in (False, True):
        database = f"{DB}_late_{crash}"
        apply_migrations(client, database, ttl_days=30)
        clock = [0.0]
        recorder = Recorder(client, database, clock)
        manager = recorder.manager(lateness_s=120, grace_s=10)
        _drive(recorder, manager, [*batches, late_batch])
        state = manager.partition(0)
        assert state is not None and state.late_spans == 3 and state.frontier is not None
        if crash:
            manager = recorder.manager(lateness_s=120, grace_s=10)
            _drive(recorder, manager, [], resume_at=last + 2)
            rebuilt = manager.partition(0)
            assert rebuilt is not None and (rebuilt.late_spans, rebuilt.frontier) == (3, state.frontier)
            assert rebuilt.root_high_ms == state.root_high_ms
        _drive(recorder, manager, [closing_batch])
        emitted.append(recorder.sent)
    runs = [[f for _, value in sent for f in MinuteMerger(1).add(value)] for sent in emitted]
    assert [(f.minute, f.late_spans) for f in runs[0]] == [(f.minute, f.late_spans) for f in runs[1]]
    for uninterrupted, restarted in zip(*runs, strict=True):
        pd.testing.assert_frame_equal(_comparable(uninterrupted), _comparable(restarted), rtol=1e-9)
    figures = runs[0]
    assert sum(int(f.frame["spans"].sum()) for f in figures) == len(rows) + 3
    [moved] = [f for f in figures if f.late_spans]
    assert moved.late_spans == 3 and moved.minute.timestamp() == state.frontier


def _comparable(figure: MinuteFigures) -> pd.DataFrame:
    """A minute's frame in key order, sketches as (count, median): equal however its groups were merged."""
    frame = figure.frame.copy()
    for name in [column for column in frame.columns if column.endswith("_sketch")]:
        frame[name] = [
            None if sketch is None else (sketch.count, sketch.get_quantile_value(0.5)) for sketch in frame[name]
        ]
    for name in [column for column in frame.columns if isinstance(frame[column].iloc[0] if len(frame) else None, dict)]:
        frame[name] = [sorted(value.items()) for value in frame[name]]
    return expect.keyed(frame)
