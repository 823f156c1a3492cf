"""Validated spans to a column batch, and a column batch to the ``spans`` table's rows.

The worker decodes every Kafka batch into Arrow columns (spanline.contract.columns). Derivation
and pricing read a pandas frame of them (``columns_to_frame``, mostly without copies); the insert
table is assembled in Arrow from the decoded columns and only the columns pandas computed
(``insert_table``), and the rows frame the window aggregation reads is a view of that table
(``rows_frame``). Every step works on whole columns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from spanline.contract.columns import SpanColumns, arrow_type, dict_columns
from spanline.contract.records import FIELD_KINDS
from spanline.contract.schema import TOKEN_DETAIL_FIELDS, TOKEN_FIELDS
from spanline.streams.derive import DERIVED
from spanline.streams.pricing.catalog import PRICE_COLUMNS

#: Optional text fields stored as '' when absent (LowCardinality(String) columns).
TEXT_DEFAULTS = (
    "parent_span_id",
    "error_type",
    "finish_reason",
    "provider",
    "endpoint",
    "region",
    "model_requested",
    "model_response",
    "cache_layer",
    "route",
    "model_tier",
    "routing_reason",
    "fallback_from",
    "prompt_id",
    "prompt_version",
    "prompt_hash",
    "user_id_hash",
    "session_id",
    "index_name",
    "embedding_model",
    "index_embedding_model",
    "tool_name",
    "eval_name",
    "content",
)
#: Integers stored as 0 when absent.
ZERO_DEFAULTS = ("http_status", "context_window")
#: Columns that stay nullable (absent is not zero: a missing TTFT is not a 0 ms TTFT).
NULLABLE_FLOATS = ("retry_after_s", "ttft_ms", "tpot_ms", "cache_similarity", "eval_score", "cost_usd_reported")
NULLABLE_BOOLS = ("cache_hit", "eval_passed")

#: Every column of the raw ``spans`` table, in table order (sql/migrations/0001, 0006, 0008, 0009, 0011).
TABLE_COLUMNS: tuple[str, ...] = (
    "tenant_id",
    "service",
    "feature",
    "environment",
    "kind",
    "name",
    "start_time",
    "end_time",
    "duration_ms",
    "trace_id",
    "span_id",
    "parent_span_id",
    "status",
    "error_type",
    "http_status",
    "retry_after_s",
    "attempt",
    "finish_reason",
    "provider",
    "endpoint",
    "region",
    "model_requested",
    "model_response",
    *TOKEN_FIELDS,
    *TOKEN_DETAIL_FIELDS,
    "context_window",
    "context_truncated",
    "ttft_ms",
    "tpot_ms",
    "cache_hit",
    "cache_layer",
    "cache_similarity",
    "route",
    "model_tier",
    "routing_reason",
    "fallback_from",
    "prompt_id",
    "prompt_version",
    "prompt_hash",
    "user_id_hash",
    "session_id",
    "index_name",
    "top_k",
    "retrieval_doc_ids",
    "retrieval_scores",
    "embedding_model",
    "index_embedding_model",
    "index_documents",
    "index_chunks",
    "tool_name",
    "eval_name",
    "eval_score",
    "eval_passed",
    "attributes",
    "cost_usd_reported",
    "content",
    *PRICE_COLUMNS,
    "schema_version",
    "source",
    "ingested_at",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
)


def spans_to_frame(spans: list[dict[str, Any]]) -> pd.DataFrame:
    """One column per schema field from validated span dicts, absent fields at their defaults."""
    return columns_to_frame(dict_columns(spans))


def columns_to_frame(columns: SpanColumns) -> pd.DataFrame:
    """The column batch as a pandas frame: one column per schema field, in the model's order.

    Text is Arrow-backed ``str`` (no copy), integers ``int64`` (``float64`` with NaN where the
    field may be null), floats ``float64``, booleans ``bool`` (objects where null), times
    ``datetime64[ms, UTC]``, lists and maps the Python objects themselves.
    """
    data: dict[str, Any] = {}
    for name, kind in FIELD_KINDS.items():
        array = columns.arrays[name]
        if kind.base == "text":
            data[name] = pd.arrays.ArrowStringArray(array.cast(pa.large_string()), dtype=_STR)
        elif kind.base == "time":
            data[name] = pc.cast(array, _MILLIS, safe=False).to_pandas()  # storable times: truncation = floor
        elif kind.base in ("list", "dict"):
            data[name] = np.fromiter(columns.values[name], dtype=object, count=len(array))
        elif kind.base == "bool" and kind.nullable:
            data[name] = array.to_pandas()  # objects: True, False, None
        else:
            data[name] = array.to_numpy(zero_copy_only=False)
    return pd.DataFrame(data, copy=False)


def insert_table(
    columns: SpanColumns,
    derived: pd.DataFrame,
    prices: pd.DataFrame,
    *,
    source: np.ndarray,
    topic: str,
    partition: int,
    offsets: np.ndarray,
    timestamps: np.ndarray | None = None,
) -> pa.Table:
    """The spans as the ``spans`` table stores them, as Arrow (the insert format chDB/ClickHouse
    read fastest): the model's columns as they came from decoding, defaults filled, with the
    derived columns of ``derived`` (streams/derive.py), the price columns of ``prices`` and the
    pipeline's columns. No column goes through pandas unless pandas computed it."""
    count = len(columns)
    stamps = np.zeros(count, dtype=np.int64) if timestamps is None else np.clip(timestamps, 0, _MAX_STAMP_MS)
    pipeline: dict[str, Any] = {
        "source": pa.array(source, pa.large_string()),
        "ingested_at": pa.array(np.full(count, _now_ms(), dtype=np.int64), pa.int64()),
        "kafka_topic": pa.array(np.full(count, topic, dtype=object), pa.large_string()),
        "kafka_partition": pa.array(np.full(count, partition, dtype=np.int32)),
        "kafka_offset": pa.array(np.asarray(offsets, dtype=np.int64)),
        "kafka_timestamp": pa.array(stamps),
    }
    arrays: list[pa.Array] = []
    for field in SPANS_SCHEMA:
        name = field.name
        if name in pipeline:
            array = pipeline[name]
        elif name in DERIVED:
            array = pa.Array.from_pandas(derived[name], type=field.type)
        elif name in PRICE_COLUMNS:
            array = pa.Array.from_pandas(prices[name], type=field.type)
        else:
            array = columns.arrays[name]
        if name in TEXT_DEFAULTS:
            array = pc.fill_null(array, "")
        elif name in ZERO_DEFAULTS:
            array = pc.fill_null(array, 0)
        # Times: decoded µs floored to the table's ms, as columns_to_frame does (storable times are after 1970).
        arrays.append(pc.cast(array, field.type, safe=not pa.types.is_timestamp(field.type)))
    return pa.Table.from_arrays(arrays, schema=SPANS_SCHEMA)


def rows_frame(table: pa.Table, columns: SpanColumns) -> pd.DataFrame:
    """``insert_table``'s rows as a pandas frame, for the window aggregation and dead letters:
    text stays in Arrow (no copy), nullable numbers and booleans become pandas' masked types, lists
    and maps are the decoded Python objects themselves (``columns.values``)."""
    data: dict[str, Any] = {}
    for field in table.schema:
        name, array = field.name, table.column(field.name)
        if name in columns.values:
            data[name] = np.fromiter(columns.values[name], dtype=object, count=len(array))
        elif name in _MASKED:
            data[name] = _MASKED[name].__from_arrow__(array)
        elif pa.types.is_large_string(field.type):
            data[name] = pd.arrays.ArrowStringArray(array, dtype=_STR)
        elif pa.types.is_timestamp(field.type):
            data[name] = array.to_pandas()
        else:
            data[name] = array.to_numpy()
    return pd.DataFrame(data, copy=False)


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def _table_type(name: str) -> pa.DataType:
    if name in _TABLE_TYPES:
        return _TABLE_TYPES[name]
    kind = FIELD_KINDS[name]
    return _MILLIS if kind.base == "time" else arrow_type(kind)


_MILLIS = pa.timestamp("ms", tz="UTC")
#: Columns whose type is not their field's column type (spanline.contract.columns.arrow_type).
_TABLE_TYPES: dict[str, pa.DataType] = {
    **dict.fromkeys(ZERO_DEFAULTS, pa.uint32()),
    "top_k": pa.uint32(),
    "index_documents": pa.uint64(),
    "index_chunks": pa.uint64(),
    "tpot_ms": pa.float64(),
    **dict.fromkeys(("input_cost_usd", "cache_read_cost_usd", "cache_write_cost_usd", "output_cost_usd"), pa.float64()),
    "cost_usd": pa.float64(),
    "cost_known": pa.uint8(),
    **dict.fromkeys(("price_source", "price_version", "price_entry", "source", "kafka_topic"), pa.large_string()),
    **dict.fromkeys(("ingested_at", "kafka_timestamp"), _MILLIS),
    "kafka_partition": pa.int32(),
    "kafka_offset": pa.int64(),
}
#: The Arrow schema of the worker's ``spans`` inserts.
SPANS_SCHEMA = pa.schema([pa.field(name, _table_type(name)) for name in TABLE_COLUMNS])
_STR = pd.StringDtype("pyarrow", na_value=np.nan)
#: Nullable columns the rows frame holds as pandas' masked types.
_MASKED: dict[str, Any] = {
    **dict.fromkeys(NULLABLE_FLOATS, pd.Float64Dtype()),
    **dict.fromkeys(NULLABLE_BOOLS, pd.BooleanDtype()),
    "top_k": pd.UInt32Dtype(),
    "index_documents": pd.UInt64Dtype(),
    "index_chunks": pd.UInt64Dtype(),
}
#: Kafka timestamps are the producer's clock: kept inside what DateTime64(3) and pandas hold.
_MAX_STAMP_MS = 7_258_118_400_000  # 2200-01-01
