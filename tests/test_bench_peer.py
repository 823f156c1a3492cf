"""The peer benchmark (bench/peer_kafka_engine.py) keeps working: on 2,000 spans, Spanline's
worker and the ClickHouse Kafka engine + materialized view store identical spans and rollups,
and its comparison reports a column that differs."""

from __future__ import annotations

import pyarrow as pa
import pytest

from bench.peer_kafka_engine import compare, measure, same
from spanline.streams.frame import TABLE_COLUMNS


@pytest.mark.e2e
def test_worker_and_kafka_engine_store_identical_rows() -> None:
    figures, differing = measure(2_000, partitions=2)

    assert differing == {}
    assert figures["peer_duplicate_rows"] == 0
    assert figures["spans_columns_compared"] == len(TABLE_COLUMNS) - 1  # ingested_at differs by design
    assert isinstance(figures["rollup_rows_compared"], int) and figures["rollup_rows_compared"] > 0
    for name in ("worker_spans_per_s", "peer_spans_per_s", "floor_process_batch_spans_per_s"):
        assert isinstance(figures[name], int) and figures[name] > 0, name


def test_compare_names_each_differing_column() -> None:
    ours = pa.table({"span_id": ["a", "b"], "cost_usd": [0.5, 1.0], "retrieval_doc_ids": [["d1"], []]})
    theirs = ours.set_column(1, "cost_usd", pa.array([0.5, 1.0000001]))

    assert compare(ours, ours) == {}
    assert compare(ours, theirs) == {"cost_usd": 1}
    assert compare(ours, theirs, rel_tol=1e-6) == {}
    assert same([float("nan"), 1.0], [float("nan"), 1.0], 0.0)  # quantiles of an empty sketch
    assert not same([float("nan")], [1.0], 0.5)
    assert compare(ours, ours.slice(0, 1)) == {"(row count)": 1}
