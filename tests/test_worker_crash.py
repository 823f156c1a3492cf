"""A worker killed mid-stream loses no minute window and no rollup row, and counts none twice.

A fixed workload goes through a real broker (tansu) and `spanline worker` processes; the worker
is SIGKILLed after its first windows and restarted. The test reads the `metrics` topic, merges
the partitions' records with MinuteMerger, and compares every counter, map, cost and percentile
of the windows and of `spans_minute` with a pandas recomputation from the raw spans read back
from ClickHouse. (Windows and rollups agreeing with each other is by construction: the worker
writes the rollup from the same partials it adds to the windows, streams/rollup.py.)
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from kafka import KafkaConsumer, TopicPartition

from spanline.kafka.publish import SpanPublisher, partition_for
from spanline.simulator.workload import WorkloadConfig
from spanline.windows.aggregate import ROW_COLUMNS
from spanline.windows.merger import MinuteFigures, MinuteMerger
from tests.support import window_expectations as expect
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PARTITIONS = 3
#: Default lateness (120 s) and grace (10 s): agent traces put child spans up to ~90 s after the
#: next traces' roots, but each trace is published whole at its root, so minutes close 10 s after
#: the next roots and no span is late. The end of the workload is closed by data (see
#: _closing_spans), not by waiting for idle partitions.
WINDOW_ENV = {"SPANLINE_WINDOW_IDLE_S": "2"}
QUANTILES = (0.5, 0.95, 0.99)
RAW_COLUMNS = (*(c for c in ROW_COLUMNS if c != "kafka_offset"), "span_id")


class MetricsReader:
    """Reads the metrics topic from the beginning into a MinuteMerger (no consumer group)."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        partition = TopicPartition(topic, 0)
        self._consumer.assign([partition])
        self._consumer.seek_to_beginning(partition)
        self.merger = MinuteMerger(PARTITIONS)
        self.figures: list[MinuteFigures] = []
        self.records = 0

    def poll(self) -> None:
        for messages in self._consumer.poll(timeout_ms=200).values():
            for message in messages:
                self.records += 1
                self.figures += self.merger.add(message.value)

    def wait_for(self, before: datetime, stack: Stack, timeout_s: float = 60) -> list[MinuteFigures]:
        """Poll until every minute before ``before`` is complete; the figures of those minutes."""
        deadline = time.monotonic() + timeout_s
        while self.merger.complete_before is None or self.merger.complete_before < before:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"minutes before {before} not complete after {timeout_s}s ({self.records} "
                    f"records, {len(self.figures)} minutes); logs in {stack.home}"
                )
            stack.wait_until(lambda: True, 1, "worker alive")
            self.poll()
        return [figure for figure in self.figures if figure.minute < before]

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture
def stack(tansu_kafka: Any, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tansu_kafka.bootstrap_servers, tmp_path, partitions=PARTITIONS)
    stack.env.update(WINDOW_ENV)
    yield stack
    stack.close()


def _publish(stack: Stack, spans: list[dict[str, object]], spans_per_message: int = 500) -> None:
    publisher = SpanPublisher(stack.bootstrap_servers, stack.settings.topic_spans, spans_per_message=spans_per_message)
    publisher.send(spans, "worker-crash")
    publisher.flush()
    publisher.close()


def _closing_spans(template: dict[str, object], end: datetime) -> list[dict[str, object]]:
    """One span per partition, well past ``end`` + the lateness: every partition's watermark
    passes ``end``, so all minutes before it close by data. Not part of the compared minutes."""
    spans, partitions = [], set()
    for index in range(1000):
        trace_id = f"closing-{index}"
        partition = partition_for(trace_id, PARTITIONS)
        if partition in partitions:
            continue
        partitions.add(partition)
        start = end + timedelta(minutes=5)
        spans.append(
            {
                **template,
                "trace_id": trace_id,
                "span_id": f"{trace_id}-root",
                "parent_span_id": None,
                "start_time": start.isoformat().replace("+00:00", "Z"),
            }
        )
        if len(partitions) == PARTITIONS:
            return spans
    raise AssertionError("no trace ids for every partition")


def _raw_rows(stack: Stack) -> pd.DataFrame:
    result = stack.query(f"SELECT {', '.join(RAW_COLUMNS)} FROM {{db}}.spans")
    rows = pd.DataFrame(result.rows, columns=result.columns)
    rows["start_time"] = pd.to_datetime(rows["start_time"], format="ISO8601", utc=True)
    return rows


def _rollups(stack: Stack, before: datetime) -> pd.DataFrame:
    sums = ", ".join(f"sum({name}) AS {name}" for name in expect.COUNTS + expect.SUMS)
    maps = ", ".join(f"sumMap({name}) AS {name}" for name in expect.MAPS)
    sketches = ", ".join(
        f"arrayMap(q -> q / 1000, quantilesDDMerge(0.01, 0.5, 0.95, 0.99)({name.removesuffix('_ms')}_us_sketch)) AS {name}_q"
        for name in ("duration_ms", "ttft_ms", "tpot_ms")
    )
    keys = ", ".join(expect.KEYS)
    result = stack.query(
        f"SELECT {keys}, {sums}, {maps}, {sketches}, "
        "quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(input_tokens_sketch) AS input_tokens_q "
        "FROM {db}.spans_minute WHERE minute < {before:DateTime('UTC')} " + f"GROUP BY {keys}",
        before=before.strftime("%Y-%m-%d %H:%M:%S"),
    )
    frame = pd.DataFrame(result.rows, columns=result.columns)
    frame["minute"] = pd.to_datetime(frame["minute"], format="ISO8601", utc=True)
    return expect.keyed(frame)


def assert_rollups_equal_pandas(rollups: pd.DataFrame, rows: pd.DataFrame) -> None:
    spans = expect.flags(rows)
    expected = expect.expected_counters(spans)
    assert rollups.index.equals(expected.index)
    pd.testing.assert_frame_equal(rollups[expect.COUNTS].astype("int64"), expected[expect.COUNTS], check_dtype=False)
    pd.testing.assert_frame_equal(rollups[expect.SUMS].astype(float), expected[expect.SUMS], rtol=1e-9, atol=0.0)
    for name, series in expect.expected_maps(spans).items():
        flat = {(*key, map_key): value for key, values in rollups[name].items() for map_key, value in values.items()}
        got = pd.Series(flat, dtype=float).sort_index()
        assert got.index.tolist() == series.index.tolist(), name
        np.testing.assert_allclose(got.to_numpy(), series.to_numpy(), rtol=1e-9, err_msg=name)
    for name in expect.SKETCHES:
        for key, group in expect.keyed(expect.sketch_values(spans, name)).groupby(expect.KEYS):
            estimates = rollups.loc[key, f"{name}_q"]
            for quantile, estimate in zip(QUANTILES, estimates, strict=True):
                assert expect.within_sketch_error(estimate, group["value"].to_numpy(), quantile), (name, key, quantile)


def _before(rows: pd.DataFrame, end: datetime) -> pd.DataFrame:
    start = pd.to_datetime(rows["start_time"], utc=True)
    return rows.loc[start < pd.Timestamp(end)].reset_index(drop=True)


def test_a_worker_killed_mid_stream_loses_no_window_and_counts_none_twice(stack: Stack) -> None:
    minutes = 6
    chunks = expect.workload(WorkloadConfig(start=START, duration_s=minutes * 60, requests_per_s=3, seed=11))
    end = START + timedelta(minutes=minutes)
    first = [span for chunk in chunks[: len(chunks) * 2 // 3] for span in chunk]
    spans = [span for chunk in chunks for span in chunk]
    spans += _closing_spans(spans[0], end)
    stack.env["SPANLINE_BATCH_MAX_MESSAGES"] = "3"  # many small batches: the kill lands between commits
    reader = MetricsReader(stack.bootstrap_servers, stack.settings.topic_metrics)
    try:
        _publish(stack, first, spans_per_message=40)
        stack.start_worker()
        stack.wait_until(lambda: reader.poll() or reader.records >= 2, 60, "the first emitted windows")
        stack.stop_worker(signal.SIGKILL)
        records_before_kill = reader.records
        _publish(stack, spans[len(first) :], spans_per_message=40)
        stack.start_worker()
        # minutes close early, so the kill comes after few records and most spans are left to the
        # restarted worker: on a loaded 2-core box that takes over a minute
        stack.wait_for_count("SELECT count() FROM {db}.spans", len(spans), timeout_s=180)
        figures = reader.wait_for(end, stack)
    finally:
        reader.close()
    rows = _raw_rows(stack)
    assert len(rows) == len(spans) == rows["span_id"].nunique()  # stored exactly once
    log = (stack.home / "worker.log").read_text(errors="replace")
    assert log.count("windows resumed at offset") >= 2 * PARTITIONS, "both workers resumed every partition"
    assert records_before_kill >= 2
    assert [figure.minute for figure in figures if len(figure.frame)] == [
        START + timedelta(minutes=m) for m in range(minutes)
    ]
    assert sum(figure.late_spans for figure in figures) == 0
    expect.assert_figures_equal_pandas(figures, _before(rows, end))
    assert_rollups_equal_pandas(_rollups(stack, end), _before(rows, end))
    windows = stack.query("SELECT count(), uniqExact(partition, minute) FROM {db}.metric_windows").rows[0]
    assert windows[0] == windows[1] > 0  # re-emitted windows were recorded once
