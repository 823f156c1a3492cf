"""The worker's Arrow insert table (streams/frame.py ``insert_table``) and its rows frame equal,
column for column, what the worker built in pandas before (tests/support/pandas_rows.py): on the
simulator workload, on generated messages of every kind the fast-path tests generate (both paths,
nulls, defaults, odd times), and after re-sent spans were dropped from the batch."""

from __future__ import annotations

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given
from hypothesis import strategies as st

from spanline.streams.batcher import Batch, Message
from spanline.streams.frame import SPANS_SCHEMA
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import ValidSpans, decode_batch, process_batch
from spanline.streams.resends import RecentSpans
from tests.support.pandas_rows import pandas_rows
from tests.test_fast_path import BASE, MESSAGES, PROPERTY

CATALOG = PriceCatalog.load()


def assert_same_rows(batch: Batch, valid: ValidSpans, recent: RecentSpans | None = None) -> int:
    """Every part of ``process_batch`` equals the pandas rows of the same spans; returns the rows compared."""
    processed = process_batch(batch, "spans", CATALOG, recent)
    compared = 0
    for part in processed.parts:
        rows, table = pandas_rows(valid, part.start, part.stop, "spans", batch.partition, CATALOG)
        assert part.table.schema == SPANS_SCHEMA
        assert part.table.column_names == table.column_names
        got, want = part.table.drop_columns(["ingested_at"]), table.drop_columns(["ingested_at"])
        for name in got.column_names:
            expected = want.column(name)
            if expected.type == pa.list_(pa.null()):  # pandas infers no item type when every list is empty
                assert pc.all(pc.equal(pc.list_value_length(expected), 0)).as_py()
                expected = expected.cast(got.schema.field(name).type)
            assert got.schema.field(name).type == expected.type, name
            assert got.column(name).equals(expected), name
        pd.testing.assert_frame_equal(
            part.rows.drop(columns=["ingested_at"]), rows.drop(columns=["ingested_at"]), check_exact=True
        )
        compared += part.table.num_rows
    return compared


def batch_of(values: list[bytes]) -> Batch:
    messages = [Message(3, 100 + i, value, f"src{i % 2}", 1_700_000_000_000 + i) for i, value in enumerate(values)]
    return Batch(3, messages[0].offset, messages[-1].offset, messages, replayed=False)


def test_the_simulator_workload_is_stored_as_the_pandas_rows_were() -> None:
    batch = batch_of([orjson.dumps(BASE[i : i + 100]) for i in range(0, len(BASE), 100)])
    valid, letters, _ = decode_batch(batch, "spans")
    assert not letters
    assert assert_same_rows(batch, valid) == len(BASE)


def test_a_batch_without_errors_is_stored_as_the_pandas_rows_were() -> None:
    """Columns no span of the batch sets (``error_type`` here) are nulls of their own type."""
    spans = [span for span in BASE if span.get("status") != "error" and not span.get("error_type")]
    batch = batch_of([orjson.dumps(spans)])
    valid, _, _ = decode_batch(batch, "spans")
    assert valid.frame["error_type"].isna().all()
    assert assert_same_rows(batch, valid) == len(spans)


def test_rows_left_after_dropping_resends_are_stored_as_the_pandas_rows_were() -> None:
    """Re-sent spans are cut out of the batch's columns (``SpanColumns.take``) before the rows are built."""
    batch = batch_of([orjson.dumps(BASE[i : i + 100]) for i in range(0, len(BASE), 100)])
    recent = RecentSpans(window_ms=3_600_000)
    seen = batch_of([orjson.dumps(BASE[50:150]), orjson.dumps(BASE[300:320])])
    stored = process_batch(seen, "spans", CATALOG, recent).parts
    recent.add(stored[0].keys, stored[0].stamps)
    valid, _, _ = decode_batch(batch, "spans")
    repeated = recent.resends(valid.keys(), valid.stamps)
    assert int(repeated.sum()) == 120
    assert assert_same_rows(batch, valid.select(~repeated), recent) == len(BASE) - 120


@PROPERTY
@given(st.lists(MESSAGES, min_size=1, max_size=4))
def test_generated_messages_are_stored_as_the_pandas_rows_were(values: list[bytes]) -> None:
    batch = batch_of(values)
    valid, _, _ = decode_batch(batch, "spans")
    assert_same_rows(batch, valid)
