"""The SDK's own schema facts (spanline_sdk.schema) agree with the one schema, the server's model.

The SDK cannot import the pydantic model (it installs without the server), so it keeps the
few names and limits it needs; any drift between the two fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from spanline.contract.schema import SCHEMA_VERSION, ErrorType, Span, SpanKind
from spanline_sdk import schema as sdk_schema
from spanline_sdk.fields import SETTABLE


def minimal(**fields: Any) -> dict[str, Any]:
    span = {"span_id": "s", "trace_id": "t", "service": "x", "kind": "llm", "start_time": "2026-11-20T12:00:00Z"}
    return span | {"duration_ms": 1.0} | fields


def test_version_and_value_sets_agree() -> None:
    assert sdk_schema.SCHEMA_VERSION == SCHEMA_VERSION
    assert [kind.value for kind in sdk_schema.SpanKind] == [kind.value for kind in SpanKind]
    assert [error.value for error in sdk_schema.ErrorType] == [error.value for error in ErrorType]


def test_every_field_the_sdk_writes_is_a_schema_field() -> None:
    assert set(sdk_schema.SDK_FIELDS) <= set(Span.model_fields)
    assert SETTABLE - set(Span.model_fields) == {"model", "user_id"}  # shorthands the SDK or receiver resolve
    assert not set(sdk_schema.SDK_FIELDS) & SETTABLE - {"trace_id"}  # callers may only pass an incoming trace id


@pytest.mark.parametrize(
    ("field", "limit", "value"),
    [
        ("attributes", sdk_schema.MAX_ATTRIBUTE_CHARS, lambda n: {"k": "a" * n}),
        ("content", sdk_schema.MAX_CONTENT_CHARS, lambda n: "a" * n),
    ],
)
def test_the_sdk_cuts_at_the_schema_s_own_limits(field: str, limit: int, value: Any) -> None:
    Span.model_validate(minimal(**{field: value(limit)}))
    with pytest.raises(ValidationError):
        Span.model_validate(minimal(**{field: value(limit + 1)}))
