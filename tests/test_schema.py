"""The canonical schema: committed JSON Schema in sync, per-item errors, token rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from pydantic import ValidationError

from spanline.contract.schema import Span
from spanline.contract.schema_export import SCHEMA_PATH, span_json_schema
from spanline.contract.validation import validate_items


def span(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "span_id": "s1",
        "trace_id": "t1",
        "tenant_id": "acme",
        "service": "chat-api",
        "kind": "llm",
        "start_time": "2026-11-22T10:00:00Z",
        "duration_ms": 120.5,
        "provider": "openai",
        "model_requested": "gpt-4o",
        "input_tokens": 100,
        "output_tokens": 20,
    }
    return {**base, **fields}


def test_committed_json_schema_matches_the_model() -> None:
    assert SCHEMA_PATH.read_bytes() == span_json_schema(), "run `spanline schema` and commit span.schema.json"


def test_errors_name_the_item_index_and_field() -> None:
    items = [span(), span(span_id="s2", input_tokens=-5), "not an object", span(span_id="s4", kind="banana")]
    result = validate_items(items)
    assert result.indexes == [0]
    reasons = {item.index: item.reason for item in result.invalid}
    assert set(reasons) == {1, 2, 3}
    assert reasons[1].startswith("[1].input_tokens:")
    assert "[3].kind:" in reasons[3]


def test_cached_and_reasoning_tokens_are_parts_of_input_and_output() -> None:
    Span.model_validate(span(input_tokens=100, cache_read_tokens=60, cache_write_tokens=40))
    with pytest.raises(ValidationError, match="exceed input_tokens"):
        Span.model_validate(span(input_tokens=100, cache_read_tokens=90, cache_write_tokens=20))
    with pytest.raises(ValidationError, match="reasoning_tokens exceed"):
        Span.model_validate(span(output_tokens=10, reasoning_tokens=11))


def test_duration_or_end_time_required_and_consistent() -> None:
    with pytest.raises(ValidationError, match="give end_time or duration_ms"):
        Span.model_validate(span(duration_ms=None))
    with pytest.raises(ValidationError, match="disagrees"):
        Span.model_validate(span(end_time="2026-11-22T10:00:01Z", duration_ms=5.0))
    model = Span.model_validate(span(duration_ms=None, end_time="2026-11-22T12:00:01+02:00"))
    assert model.end_time == datetime(2026, 11, 22, 10, 0, 1, tzinfo=UTC)
    naive = Span.model_validate(span(start_time="2026-11-22T10:00:00"))
    assert naive.start_time.tzinfo == UTC


@pytest.mark.parametrize(
    "bad",
    [
        {"duration_ms": float("nan")},
        {"unknown_field": 1},
        {"status": "ok", "error_type": "timeout"},
        {"retrieval_doc_ids": ["a", "b"], "retrieval_scores": [0.5]},
        {"input_tokens": 10**12},
        {"schema_version": 2},
        {"start_time": "1969-12-31T23:59:59Z"},
        {"start_time": "2099-12-31T23:59:59Z", "duration_ms": 1000.0},
        {"retry_after_s": float("inf")},
        {"eval_score": 1e300},
    ],
)
def test_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Span.model_validate(span(**bad))


EQUIVALENCE_CASES = [
    span(),
    span(status="error"),
    span(status="ok", error_type="timeout"),
    span(duration_ms=None, end_time="2026-11-22T10:00:00.500Z"),
    span(duration_ms=None, end_time="2026-11-22T09:59:59Z"),
    span(duration_ms=None, end_time="2026-11-24T10:00:00Z"),
    span(duration_ms=None),
    span(end_time="2026-11-22T10:00:00.1205Z"),
    span(end_time="2026-11-22T10:00:05Z"),
    span(cache_read_tokens=60, cache_write_tokens=41),
    span(output_tokens=3, reasoning_tokens=4),
    span(retrieval_doc_ids=["a", "b"], retrieval_scores=[0.5]),
    span(retrieval_doc_ids=["a", "b"], retrieval_scores=[0.5, 0.25], attributes={"k": "v"}),
    span(kind="banana"),
    span(service="  padded  ", route=" r ", start_time="2026-11-22T10:00:00"),
    span(input_tokens="12"),
    span(attempt=-1),
    span(unknown_field=1),
    {
        "span_id": "minimal",
        "trace_id": "t",
        "service": "s",
        "kind": "tool",
        "start_time": "2026-11-22T10:00:00Z",
        "duration_ms": 1,
    },
    span(start_time="2300-01-01T00:00:00Z"),
    span(start_time="2099-12-31T23:59:59.999Z", duration_ms=1.0),
    span(retrieval_doc_ids=["a"], retrieval_scores=[1e13]),
    span(start_time="1970-01-01T00:00:00Z", duration_ms=0, retry_after_s=1e12, eval_score=-1e12),
]


def test_batch_validation_accepts_and_words_exactly_what_the_model_does() -> None:
    """validate_items (TypedDict + batch rules) against Span.model_validate, item by item."""
    from spanline.streams.frame import spans_to_frame

    result = validate_items(EQUIVALENCE_CASES)
    reasons = {item.index: item.reason for item in result.invalid}
    models = {}
    for index, item in enumerate(EQUIVALENCE_CASES):
        try:
            models[index] = Span.model_validate(item)
        except ValidationError as error:
            assert index in reasons, f"case {index} passed batch validation but the model refused: {error}"
            for detail in error.errors(include_url=False):
                assert detail["msg"] in reasons[index]
    assert result.indexes == sorted(models)
    assert sorted(models) == [0, 1, 3, 7, 12, 14, 15, 18, 22]  # every rule and default is exercised above
    frame = spans_to_frame(result.spans)
    for row, index in enumerate(result.indexes):
        expected = models[index].model_dump()
        for name, value in expected.items():
            actual = frame[name].iloc[row]
            if name in ("start_time", "end_time"):
                expected_time = pd.NaT if value is None else pd.Timestamp(value).floor("ms")  # rows keep ms
                assert actual is expected_time or actual == expected_time, (index, name, actual, value)
            elif isinstance(value, list | dict):
                assert list(actual) == value if isinstance(value, list) else dict(actual) == value
            elif value is None:
                assert actual is None or pd.isna(actual), (index, name, actual)
            else:
                assert actual == value, (index, name, actual, value)
