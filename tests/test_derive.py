"""Derived fields are computed once, column-wise."""

from __future__ import annotations

import math

import pandas as pd

from spanline.contract.validation import validate_items
from spanline.streams.derive import derive
from spanline.streams.frame import spans_to_frame


def test_duration_end_time_tpot_and_default_error_type() -> None:
    items = [
        {
            "span_id": "a",
            "trace_id": "t",
            "service": "s",
            "kind": "llm",
            "start_time": "2026-01-01T00:00:00Z",
            "end_time": "2026-01-01T00:00:01.500Z",
            "ttft_ms": 300.0,
            "output_tokens": 101,
        },
        {
            "span_id": "b",
            "trace_id": "t",
            "service": "s",
            "kind": "llm",
            "start_time": "2026-01-01T00:00:00Z",
            "duration_ms": 250.0,
            "status": "error",
            "output_tokens": 1,
            "ttft_ms": 100.0,
        },
        {
            "span_id": "c",
            "trace_id": "t",
            "service": "s",
            "kind": "tool",
            "start_time": "2026-01-01T00:00:00Z",
            "duration_ms": 40.0,
            "status": "error",
            "error_type": "tool_error",
        },
    ]
    result = validate_items(items)
    assert not result.invalid
    frame = derive(spans_to_frame(result.spans))
    assert list(frame["duration_ms"]) == [1500.0, 250.0, 40.0]
    assert frame["end_time"][1] == pd.Timestamp("2026-01-01T00:00:00.250Z")
    assert frame["tpot_ms"][0] == (1500.0 - 300.0) / 100
    assert frame["tpot_ms"].isna().tolist() == [False, True, True]
    assert list(frame["error_type"].fillna("")) == ["", "other", "tool_error"]
    assert not math.isnan(frame["duration_ms"].sum())
