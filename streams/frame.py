"""Validated spans to a column batch, and a column batch to the ``spans`` table's rows.

The worker turns every Kafka batch into one pandas frame right after validation; every
later step (derive, price, store) works on whole columns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from spanline.contract.schema import TOKEN_FIELDS, Span
from spanline.streams.pricing.catalog import PRICE_COLUMNS

SPAN_FIELDS: tuple[str, ...] = tuple(Span.model_fields)

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

#: Every column of the raw ``spans`` table, in table order (sql/migrations/0001, 0006, 0008, 0011).
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


def _defaults() -> dict[str, Any]:
    """Schema defaults a missing field takes; None-defaults are left to the columns' own NULLs."""
    defaults = {}
    for name, info in Span.model_fields.items():
        if not info.is_required():
            default = info.get_default(call_default_factory=True)
            if default is not None:
                defaults[name] = default.value if isinstance(default, Enum) else default
    return defaults


#: Field -> default for every optional field whose default is not None.
FIELD_DEFAULTS: dict[str, Any] = _defaults()
#: The empty value of a container field, shared by every row that left it out (read-only).
_EMPTY: dict[type, Any] = {list: (), dict: {}}
#: Column dtype of a filled field by its default's type (strings and enum values stay objects).
_DTYPES: dict[type, str] = {bool: "bool", int: "int64", float: "float64"}


def spans_to_frame(spans: list[dict[str, Any]]) -> pd.DataFrame:
    """One column per schema field from validated span dicts, absent fields at their defaults."""
    frame = pd.DataFrame.from_records(spans, columns=SPAN_FIELDS, coerce_float=False)
    for name, default in FIELD_DEFAULTS.items():
        column = frame[name]
        missing = column.isna().to_numpy()
        if not missing.any():
            continue
        if isinstance(default, list | dict):  # rows share one empty container: columns are never mutated
            values = column.to_numpy(dtype=object, copy=True)
            filler = np.empty(int(missing.sum()), dtype=object)
            filler.fill(_EMPTY[type(default)])  # fill() stores the object itself, never its items
            values[missing] = filler
            frame[name] = values
        else:
            filled = column.astype(object).where(~missing, default)
            frame[name] = filled.astype(_DTYPES.get(type(default), object))
    for name in ("start_time", "end_time"):
        frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[ms, UTC]")
    return frame


def table_rows(
    frame: pd.DataFrame,
    *,
    source: np.ndarray,
    topic: str,
    partition: int,
    offsets: np.ndarray,
    timestamps: np.ndarray | None = None,
) -> pd.DataFrame:
    """The frame as the ``spans`` table stores it: defaults filled, pipeline columns added."""
    out = frame.copy(deep=False)
    for name in TEXT_DEFAULTS:
        out[name] = out[name].astype(object).where(out[name].notna(), "").astype(str)
    for name in ZERO_DEFAULTS:
        out[name] = out[name].fillna(0).astype("uint32")
    for name in NULLABLE_FLOATS:
        out[name] = out[name].astype("Float64")
    for name in NULLABLE_BOOLS:
        out[name] = out[name].astype("boolean")
    out["top_k"] = out["top_k"].astype("UInt32")
    for name in ("index_documents", "index_chunks"):
        out[name] = out[name].astype("UInt64")
    out["source"] = source
    out["ingested_at"] = pd.Timestamp(datetime.now(UTC)).as_unit("ms")
    out["kafka_topic"] = topic
    out["kafka_partition"] = np.int32(partition)
    out["kafka_offset"] = offsets.astype("int64")
    stamps = np.zeros(len(out), dtype=np.int64) if timestamps is None else np.clip(timestamps, 0, _MAX_STAMP_MS)
    out["kafka_timestamp"] = pd.to_datetime(stamps, unit="ms", utc=True).as_unit("ms")
    return out.loc[:, list(TABLE_COLUMNS)]


def arrow_rows(rows: pd.DataFrame) -> pa.Table:
    """``table_rows`` output as Arrow, the insert format chDB/ClickHouse read fastest (≈ 1.8x
    insert_df). The attribute maps are given Arrow's map type; everything else converts as is."""
    attributes = pa.array([list(value.items()) for value in rows["attributes"]], type=_ATTRIBUTES)
    table = pa.Table.from_pandas(rows.drop(columns=["attributes"]), preserve_index=False)
    return table.add_column(rows.columns.get_loc("attributes"), "attributes", attributes)


_ATTRIBUTES = pa.map_(pa.string(), pa.string())
#: Kafka timestamps are the producer's clock: kept inside what DateTime64(3) and pandas hold.
_MAX_STAMP_MS = 7_258_118_400_000  # 2200-01-01
