"""OTLP/HTTP (JSON and protobuf) GenAI spans -> canonical span dicts."""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from genai_prices import Usage, calc_price
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from spanline.collectors.otlp import decode_otlp
from spanline.contract.schema import Span
from spanline.contract.validation import validate_items
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch

FIXTURE = Path(__file__).parent / "data" / "otlp" / "genai_trace.json"
JSON = "application/json"
PROTOBUF = "application/x-protobuf"
SCOPE = InstrumentationScope(name="opentelemetry.instrumentation.openai_v2", version="2.1b0")
TRACE = "5b8efff798038103d269b633813fc60c"
T0 = 1_748_779_200_000_000_000  # 2025-06-01T12:00:00Z in unix nanoseconds


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(1_748_779_200 + seconds, tz=UTC)


def validated(spans: list[dict[str, object]]) -> list[Span]:
    return [Span.model_validate({**span, "tenant_id": "acme"}) for span in spans]


# --- protobuf builders ---------------------------------------------------------------------


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(item) for item in value]))
    return AnyValue(kvlist_value=KeyValueList(values=key_values(value)))


def key_values(attributes: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in attributes.items()]


def pb_span(
    span_id: int,
    parent: int | None,
    name: str,
    start_s: float,
    end_s: float,
    attributes: dict[str, Any],
    *,
    error: str | None = None,
    events: list[PbSpan.Event] | None = None,
) -> PbSpan:
    return PbSpan(
        trace_id=bytes.fromhex(TRACE),
        span_id=span_id.to_bytes(8, "big"),
        parent_span_id=b"" if parent is None else parent.to_bytes(8, "big"),
        name=name,
        kind=PbSpan.SPAN_KIND_CLIENT,
        start_time_unix_nano=T0 + int(start_s * 1e9),
        end_time_unix_nano=T0 + int(end_s * 1e9),
        attributes=key_values(attributes),
        events=events or [],
        status=Status(code=Status.STATUS_CODE_ERROR, message=error) if error else Status(),
    )


def pb_request(spans: list[PbSpan], resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    attributes = resource or {"service.name": "support-bot", "deployment.environment.name": "prod-eu"}
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=key_values(attributes)), scope_spans=[ScopeSpans(scope=SCOPE, spans=spans)]
            )
        ]
    )


def genai_pb_spans() -> list[PbSpan]:
    """A realistic agent trace: root, Anthropic chat with caching, OpenAI reasoning, embedding, tool, failure."""
    timeout_event = PbSpan.Event(
        time_unix_nano=T0 + 5_000_000_000,
        name="exception",
        attributes=key_values(
            {"exception.type": "anthropic.APITimeoutError", "exception.message": "Request timed out."}
        ),
    )
    return [
        pb_span(
            1,
            None,
            "invoke_agent planner",
            0.0,
            6.0,
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"},
        ),
        pb_span(
            2,
            1,
            "chat claude-opus-4-1",
            0.1,
            2.1,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-opus-4-1",
                "gen_ai.response.model": "claude-opus-4-1-20250805",
                "gen_ai.usage.input_tokens": 30_000,
                "gen_ai.usage.cache_read.input_tokens": 25_000,
                "gen_ai.usage.cache_creation.input_tokens": 4_000,
                "gen_ai.usage.output_tokens": 800,
                "gen_ai.response.finish_reasons": ["tool_use"],
                "gen_ai.server.time_to_first_token": 0.9,
                "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "SECRET"}]}],
            },
        ),
        pb_span(
            3,
            1,
            "chat o4-mini",
            2.2,
            5.2,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "o4-mini",
                "gen_ai.response.model": "o4-mini-2025-04-16",
                "gen_ai.usage.input_tokens": 5_000,
                "gen_ai.usage.output_tokens": 3_000,
                "gen_ai.usage.reasoning.output_tokens": 2_600,
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.request.reasoning.effort": "high",
            },
        ),
        pb_span(
            4,
            1,
            "embeddings text-embedding-3-large",
            0.01,
            0.05,
            {
                "gen_ai.operation.name": "embeddings",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "text-embedding-3-large",
                "gen_ai.usage.input_tokens": 17,
            },
        ),
        pb_span(
            5,
            1,
            "execute_tool web_search",
            5.25,
            5.9,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "web_search",
                "gen_ai.tool.call.arguments": {"q": "SECRET"},
                "custom.bytes": b"\x00\x01\x02",
            },
        ),
        pb_span(
            6,
            1,
            "chat claude-opus-4-1",
            5.0,
            5.95,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-opus-4-1",
            },
            error="Request timed out.",
            events=[timeout_event],
        ),
    ]


# --- JSON fixture --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_spans() -> dict[str, dict[str, object]]:
    spans = decode_otlp(FIXTURE.read_bytes(), "application/json; charset=utf-8")
    by_id = {str(span["span_id"]): span for span in spans}
    assert len(by_id) == len(spans) == 8
    return by_id


def test_json_root_span_without_gen_ai_is_a_request(fixture_spans: dict[str, dict[str, object]]) -> None:
    root = fixture_spans["eee19b7ec3c1b174"]
    assert root["trace_id"] == TRACE  # uppercase hex in the payload, lowercase out
    assert root["parent_span_id"] is None
    assert root["kind"] == "request"
    assert root["name"] == "POST /v1/chat"
    assert root["service"] == "support-bot"
    assert root["environment"] == "staging"
    assert root["feature"] == "refunds"
    assert root["start_time"] == at(0) and root["end_time"] == at(4)
    assert root["status"] == "ok" and "error_type" not in root
    assert "tenant_id" not in root
    attributes = root["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["http.route"] == "/v1/chat"
    assert attributes["resource.telemetry.sdk.language"] == "python"
    assert attributes["resource.host.cpu.count"] == "8"
    assert attributes["otel.scope.name"] == "opentelemetry.instrumentation.genai"
    assert attributes["otel.scope.version"] == "0.4b0"
    assert "user.id" not in attributes and "spanline.tenant_id" not in attributes
    assert "alice" not in orjson.dumps(root).decode()


def test_json_agent_span_keeps_nested_unknown_attributes(fixture_spans: dict[str, dict[str, object]]) -> None:
    agent = fixture_spans["0000000000000a01"]
    assert agent["kind"] == "agent_step"
    assert agent["parent_span_id"] == "eee19b7ec3c1b174"
    assert agent["session_id"] == "conv_42"
    assert agent["start_time"] == datetime(2025, 6, 1, 12, 0, 0, 10_000, tzinfo=UTC)
    assert agent["attributes"] == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "support",
        "custom.tags": '["beta",2,{"nested":true}]',
        "custom.config": '{"limits":[0.5,null],"name":"cfg"}',
        "custom.blob": "AAEC",
        "custom.flag": "false",
        "custom.ratio": "0.25",
        "custom.empty": "null",
        "otel.scope.name": "opentelemetry.instrumentation.genai",
        "otel.scope.version": "0.4b0",
        "resource.telemetry.sdk.language": "python",
        "resource.host.cpu.count": "8",
        "spanline.convention": "otel-genai",
    }


def test_json_anthropic_chat_with_cache_copies_tokens(fixture_spans: dict[str, dict[str, object]]) -> None:
    chat = fixture_spans["0000000000000a02"]
    expected = {
        "kind": "llm",
        "provider": "anthropic",
        "model_requested": "claude-sonnet-4-5",
        "model_response": "claude-sonnet-4-5-20250929",
        "input_tokens": 12_000,  # includes the 8,000 read and 2,000 written: copied, not summed
        "output_tokens": 350,
        "cache_read_tokens": 8_000,
        "cache_write_tokens": 2_000,
        "finish_reason": "end_turn",
        "ttft_ms": pytest.approx(420.0),
        "endpoint": "api.anthropic.com",
        "prompt_version": "v7",
        "feature": "",
    }
    assert {key: chat.get(key) for key in expected} == expected
    assert "reasoning_tokens" not in chat
    attributes = chat["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["gen_ai.request.max_tokens"] == "1024"
    assert "gen_ai.response.finish_reasons" not in attributes  # one reason: nothing lost
    assert not any(key.startswith(("gen_ai.input", "gen_ai.output", "gen_ai.system")) for key in attributes)
    assert "SECRET" not in orjson.dumps(chat).decode()
    assert "content" not in chat


def test_json_openai_reasoning_span_uses_old_aliases_and_spanline_fields(
    fixture_spans: dict[str, dict[str, object]],
) -> None:
    chat = fixture_spans["0000000000000a04"]
    expected = {
        "kind": "llm",
        "provider": "openai",
        "model_requested": "o3-mini",
        "model_response": "o3-mini-2025-01-31",
        "input_tokens": 1_200,
        "output_tokens": 900,  # includes the 640 reasoning tokens
        "reasoning_tokens": 640,
        "cache_read_tokens": 1_024,
        "finish_reason": "stop",
        "ttft_ms": 850.0,
        "route": "reasoning",
        "model_tier": "large",
        "routing_reason": "escalation",
        "attempt": 1,
        "context_truncated": True,
        "cost_usd_reported": 0.0051,
    }
    assert {key: chat.get(key) for key in expected} == expected
    attributes = chat["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["gen_ai.response.finish_reasons"] == '["stop","length"]'  # lossy mapping: kept too
    assert attributes["gen_ai.openai.response.service_tier"] == "default"
    assert attributes["spanline.not_a_field"] == "kept"
    assert not any(
        key.startswith(("gen_ai.prompt", "gen_ai.completion", "gen_ai.usage", "gen_ai.system")) for key in attributes
    )
    assert "SECRET" not in orjson.dumps(chat).decode()


def test_json_tool_span_drops_arguments_and_result(fixture_spans: dict[str, dict[str, object]]) -> None:
    tool = fixture_spans["0000000000000a03"]
    assert tool["kind"] == "tool"
    assert tool["tool_name"] == "lookup_order"
    attributes = tool["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["gen_ai.tool.call.id"] == "call_mszuSIzqtI65i1wAUOE8w5H4"
    assert attributes["gen_ai.tool.type"] == "function"
    assert "SECRET" not in orjson.dumps(tool).decode()


def test_json_error_span_maps_status_and_error_type(fixture_spans: dict[str, dict[str, object]]) -> None:
    failed = fixture_spans["0000000000000a05"]
    assert failed["status"] == "error"
    assert failed["error_type"] == "rate_limited"
    assert failed["http_status"] == 429
    attributes = failed["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["error.type"] == "openai.RateLimitError"
    assert attributes["otel.status_description"] == "Rate limit reached for gpt-4o"
    assert "error_type" not in fixture_spans["0000000000000a02"]


def test_json_embedding_and_retrieval_spans(fixture_spans: dict[str, dict[str, object]]) -> None:
    embedding = fixture_spans["0000000000000b01"]
    assert embedding["kind"] == "embedding"
    assert embedding["embedding_model"] == embedding["model_requested"] == "text-embedding-3-small"
    assert embedding["input_tokens"] == 42
    assert embedding["service"] == "indexer"
    assert embedding["environment"] == "production"  # from the older deployment.environment
    assert embedding["feature"] == "search"  # resource-level spanline.feature
    attributes = embedding["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["gen_ai.embeddings.dimension.count"] == "1536"
    assert attributes["gen_ai.request.encoding_formats"] == '["float"]'
    assert attributes["otel.scope.name"] == "rag" and "otel.scope.version" not in attributes
    assert "resource.spanline.feature" not in attributes

    retrieval = fixture_spans["0000000000000b02"]
    assert retrieval["kind"] == "retrieval"
    assert retrieval["index_name"] == "kb-2025-05"
    assert retrieval["retrieval_doc_ids"] == ["doc_123", "doc_456"]
    assert retrieval["retrieval_scores"] == [0.95, 0.87]
    assert retrieval["top_k"] == 2
    assert retrieval["embedding_model"] == "text-embedding-3-small"
    assert retrieval["index_embedding_model"] == "text-embedding-3-large"
    assert "SECRET" not in orjson.dumps(retrieval).decode()


def test_json_fixture_spans_all_validate(fixture_spans: dict[str, dict[str, object]]) -> None:
    spans = validated(list(fixture_spans.values()))
    assert {span.tenant_id for span in spans} == {"acme"}
    assert {span.trace_id for span in spans} == {TRACE}
    assert all(span.content is None for span in spans)


# --- protobuf ------------------------------------------------------------------------------


def test_protobuf_genai_trace_field_by_field() -> None:
    body = pb_request(genai_pb_spans()).SerializeToString()
    spans = {span["span_id"]: span for span in decode_otlp(body, PROTOBUF)}
    assert len(spans) == 6

    root = spans["0000000000000001"]
    assert (root["kind"], root["parent_span_id"]) == ("request", None)  # an agent root is the request
    assert (root["service"], root["environment"]) == ("support-bot", "prod-eu")

    cached = spans["0000000000000002"]
    expected = {
        "kind": "llm",
        "provider": "anthropic",
        "model_requested": "claude-opus-4-1",
        "model_response": "claude-opus-4-1-20250805",
        "input_tokens": 30_000,
        "cache_read_tokens": 25_000,
        "cache_write_tokens": 4_000,
        "output_tokens": 800,
        "finish_reason": "tool_use",
    }
    assert {key: cached[key] for key in expected} == expected
    assert cached["ttft_ms"] == pytest.approx(900.0)
    assert cached["start_time"] == at(0.1) and cached["end_time"] == at(2.1)
    assert cached["parent_span_id"] == "0000000000000001"

    reasoning = spans["0000000000000003"]
    assert (reasoning["input_tokens"], reasoning["output_tokens"], reasoning["reasoning_tokens"]) == (
        5_000,
        3_000,
        2_600,
    )
    assert reasoning["attributes"]["gen_ai.request.reasoning.effort"] == "high"  # type: ignore[index]

    embedding = spans["0000000000000004"]
    assert (embedding["kind"], embedding["input_tokens"]) == ("embedding", 17)
    assert embedding["embedding_model"] == "text-embedding-3-large"

    tool = spans["0000000000000005"]
    assert (tool["kind"], tool["tool_name"]) == ("tool", "web_search")
    assert tool["attributes"]["custom.bytes"] == base64.b64encode(b"\x00\x01\x02").decode()  # type: ignore[index]

    failed = spans["0000000000000006"]
    assert (failed["status"], failed["error_type"]) == ("error", "timeout")  # from the exception event
    assert failed["attributes"]["otel.status_description"] == "Request timed out."  # type: ignore[index]

    assert "SECRET" not in orjson.dumps(list(spans.values())).decode()
    assert len(validated(list(spans.values()))) == 6


def test_json_and_protobuf_encodings_of_one_request_decode_identically() -> None:
    request = pb_request(genai_pb_spans())
    as_json = MessageToDict(request)  # camelCase, int64 as strings, enums as names, bytes as base64
    for resource_spans in as_json["resourceSpans"]:
        for span in resource_spans["scopeSpans"][0]["spans"]:
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in span:  # OTLP/JSON ids are hex, not protobuf-JSON base64
                    span[key] = base64.b64decode(span[key]).hex().upper()
    assert as_json["resourceSpans"][0]["scopeSpans"][0]["spans"][5]["status"]["code"] == "STATUS_CODE_ERROR"
    from_json = decode_otlp(orjson.dumps(as_json), JSON)
    from_protobuf = decode_otlp(request.SerializeToString(), PROTOBUF)
    assert from_json == from_protobuf


# --- mapping rules -------------------------------------------------------------------------


def one_span(attributes: dict[str, Any], *, parent: int | None = 1, error: str | None = None) -> dict[str, object]:
    body = pb_request([pb_span(7, parent, "step", 0.0, 1.0, attributes, error=error)]).SerializeToString()
    (span,) = decode_otlp(body, PROTOBUF)
    validated([span])
    return span


@pytest.mark.parametrize(
    ("attributes", "parent", "kind"),
    [
        ({"gen_ai.operation.name": "chat"}, 1, "llm"),
        ({"gen_ai.operation.name": "text_completion"}, 1, "llm"),
        ({"gen_ai.operation.name": "generate_content"}, None, "llm"),
        ({"gen_ai.operation.name": "embeddings"}, 1, "embedding"),
        ({"gen_ai.operation.name": "execute_tool"}, 1, "tool"),
        ({"gen_ai.operation.name": "invoke_agent"}, None, "request"),
        ({"gen_ai.operation.name": "invoke_agent"}, 1, "agent_step"),
        ({"gen_ai.operation.name": "create_agent"}, 1, "agent_step"),
        ({"gen_ai.operation.name": "retrieval"}, 1, "retrieval"),
        ({"gen_ai.operation.name": "update_memory"}, 1, "agent_step"),
        ({"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o"}, 1, "llm"),
        ({"gen_ai.tool.name": "calculator"}, 1, "tool"),
        ({"http.route": "/x"}, None, "request"),
        ({"http.route": "/x"}, 1, "agent_step"),
        ({"gen_ai.operation.name": "chat", "spanline.kind": "cache"}, 1, "cache"),
    ],
)
def test_kind(attributes: dict[str, Any], parent: int | None, kind: str) -> None:
    assert one_span(attributes, parent=parent)["kind"] == kind


@pytest.mark.parametrize(
    ("error_type", "http_status", "expected"),
    [
        ("openai.RateLimitError", None, "rate_limited"),
        ("429", None, "rate_limited"),
        ("google.api_core.exceptions.ResourceExhausted", None, "rate_limited"),
        ("anthropic.APITimeoutError", None, "timeout"),
        ("timeout", None, "timeout"),
        ("500", None, "server_error"),
        ("503", None, "server_error"),
        ("InternalServerError", None, "server_error"),
        ("APIStatusError", 529, "server_error"),
        ("context_length_exceeded", None, "context_length_exceeded"),
        ("litellm.ContextWindowExceededError", None, "context_length_exceeded"),
        ("content_filter", None, "content_filter"),
        ("asyncio.CancelledError", None, "cancelled"),
        ("tool_error", None, "tool_error"),
        ("BadRequestError", 400, "other"),
        ("_OTHER", None, "other"),
        (None, 504, "timeout"),
        (None, None, "other"),
    ],
)
def test_error_type(error_type: str | None, http_status: int | None, expected: str) -> None:
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat"}
    if error_type is not None:
        attributes["error.type"] = error_type
    if http_status is not None:
        attributes["http.response.status_code"] = http_status
    span = one_span(attributes, error="failed")
    assert (span["status"], span["error_type"]) == ("error", expected)


def test_error_type_without_error_status_stays_an_attribute() -> None:
    span = one_span({"error.type": "RateLimitError"})
    assert span["status"] == "ok" and "error_type" not in span
    assert span["attributes"]["error.type"] == "RateLimitError"  # type: ignore[index]


def test_nanosecond_times_keep_microseconds() -> None:
    span = PbSpan(
        trace_id=bytes.fromhex(TRACE),
        span_id=b"\x01" * 8,
        name="x",
        start_time_unix_nano=T0 + 123_456_789,
        end_time_unix_nano=T0 + 2_000_000_001,
    )
    (out,) = decode_otlp(pb_request([span]).SerializeToString(), PROTOBUF)
    assert out["start_time"] == datetime(2025, 6, 1, 12, 0, 0, 123_456, tzinfo=UTC)
    assert out["end_time"] == datetime(2025, 6, 1, 12, 0, 2, tzinfo=UTC)


def test_attributes_are_fitted_to_the_schema_limits() -> None:
    attributes: dict[str, Any] = {f"custom.a{i:03d}": i for i in range(300)}
    attributes["custom.a000"] = "x" * 5_000
    attributes["k" * 300] = "key too long for the schema"
    span = one_span(attributes)
    fitted = span["attributes"]
    assert isinstance(fitted, dict)
    assert len(fitted) == 256
    assert fitted["custom.a000"] == "x" * 4096
    assert "custom.a255" in fitted and "resource.deployment.environment.name" not in fitted


def test_bad_values_are_left_for_per_item_validation() -> None:
    spans = [
        pb_span(1, None, "ok", 0.0, 1.0, {"gen_ai.operation.name": "chat"}),
        pb_span(
            2,
            1,
            "bad",
            0.0,
            1.0,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.usage.input_tokens": 10,
                "spanline.cache_read_tokens": 50,  # spanline.* fields are taken as sent, never normalised
            },
        ),
        PbSpan(trace_id=bytes.fromhex(TRACE), span_id=b"\x03" * 8, name="no end", start_time_unix_nano=T0),
        pb_span(4, 1, "bad ttft", 0.0, 1.0, {"gen_ai.server.time_to_first_token": "soon"}),
    ]
    decoded = decode_otlp(pb_request(spans, {"service.name": "svc"}).SerializeToString(), PROTOBUF)
    result = validate_items([{**span, "tenant_id": "acme"} for span in decoded])
    assert result.indexes == [0]
    assert [item.index for item in result.invalid] == [1, 2, 3]
    assert "cache_read_tokens" in result.invalid[0].reason
    assert "end_time" in result.invalid[1].reason
    assert "ttft_ms" in result.invalid[2].reason


def test_missing_service_name_is_a_per_item_error() -> None:
    body = pb_request(
        [pb_span(1, None, "x", 0.0, 1.0, {})], {"telemetry.sdk.name": "opentelemetry"}
    ).SerializeToString()
    result = validate_items([{**span, "tenant_id": "acme"} for span in decode_otlp(body, PROTOBUF)])
    assert not result.spans and "service" in result.invalid[0].reason


def test_empty_requests_are_valid_and_empty() -> None:
    assert decode_otlp(b"", PROTOBUF) == []
    assert decode_otlp(ExportTraceServiceRequest().SerializeToString(), PROTOBUF) == []
    assert decode_otlp(b"{}", JSON) == []
    assert decode_otlp(b'{"resourceSpans": [{"scopeSpans": [{"spans": []}]}]}', JSON) == []


def _json_span(**fields: Any) -> bytes:
    span = {"traceId": TRACE, "spanId": "0000000000000001", "name": "x", "startTimeUnixNano": "1", **fields}
    return orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"", JSON, "not JSON"),
        (b"\x00\xff garbage", JSON, "not JSON"),
        (b"[1, 2]", JSON, "must be an object"),
        (b'{"resourceSpans": {}}', JSON, "resourceSpans must be an array"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [7]}]}]}', JSON, "spans[0]: span must be an object"),
        (_json_span(traceId="xyz"), JSON, "traceId must be 32 hex characters"),
        (_json_span(spanId="00000000000000zz"), JSON, "spanId must be 16 hex characters"),
        (
            _json_span(attributes=[{"key": "n", "value": {"intValue": "12.5"}}]),
            JSON,
            "resourceSpans[0].scopeSpans[0].spans[0]: expected an int64 (number or decimal string), got '12.5'",
        ),
        (_json_span(attributes=[{"key": "n", "value": {"stringValue": 5}}]), JSON, "expected a string"),
        (_json_span(attributes=[{"key": "n", "value": {"intValue": str(2**64)}}]), JSON, "outside int64"),
        (_json_span(startTimeUnixNano=1.5), JSON, "int64"),
        (b"garbage\x00\x01", PROTOBUF, "not an OTLP"),
        (b"\x10\x01", PROTOBUF, "no resource_spans"),
        (b'{"resourceSpans": []}', PROTOBUF, "not an OTLP"),
        (
            pb_request([PbSpan(trace_id=b"\x01\x02", span_id=b"\x01")]).SerializeToString(),
            PROTOBUF,
            "trace_id must be 16 bytes",
        ),
        (b"{}", "text/plain", "unsupported Content-Type"),
    ],
)
def test_garbage_raises_value_error(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        decode_otlp(body, content_type)


# --- speed ---------------------------------------------------------------------------------


def test_decode_speed_500_span_protobuf() -> None:
    """500 LLM spans (~20 attributes each) per export; the figure is printed for the report."""
    template = genai_pb_spans()
    spans = []
    for i in range(500):
        span = PbSpan()
        span.CopyFrom(template[1 + i % 5])
        span.span_id = (1000 + i).to_bytes(8, "big")
        extra = {"spanline.route": "default", "custom.request_id": f"req-{i}", "custom.retry": i % 3}
        span.attributes.extend(key_values(extra))
        spans.append(span)
    resource = {
        "service.name": "support-bot",
        "deployment.environment.name": "prod",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": "1.36.0",
        "host.name": "worker-3",
    }
    body = pb_request(spans, resource).SerializeToString()
    assert len(decode_otlp(body, PROTOBUF)) == 500
    rounds = 20
    started = time.perf_counter()
    for _ in range(rounds):
        decoded = decode_otlp(body, PROTOBUF)
    rate = rounds * 500 / (time.perf_counter() - started)
    print(f"\nOTLP protobuf decode: {rate:,.0f} spans/s ({len(body) / 500:.0f} bytes/span)")
    assert len(validated(decoded)) == 500
    assert rate > 5_000


# --- instrumentation families --------------------------------------------------------------
# One span each as the family's instrumentor writes it (attribute names from the packages named in
# the README's "OTLP attribute → span field, per family"), decoded, validated and, where it has
# tokens, priced by the worker's own process_batch with the real catalog.


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog.load()


def decoded(spans: list[PbSpan], resource: dict[str, Any] | None = None) -> dict[str, dict[str, object]]:
    body = pb_request(spans, resource).SerializeToString()
    by_id = {str(span["span_id"]): span for span in decode_otlp(body, PROTOBUF)}
    validated(list(by_id.values()))
    assert "SECRET" not in orjson.dumps(list(by_id.values())).decode()
    return by_id


def stored(spans: list[dict[str, object]], catalog: PriceCatalog) -> pd.DataFrame:
    """The rows the worker stores for these spans (one Kafka message), cost columns included."""
    value = orjson.dumps([{**span, "tenant_id": "acme"} for span in spans])
    processed = process_batch(Batch(0, 0, 0, [Message(0, 0, value, "otlp")], replayed=False), "spans", catalog)
    assert not processed.dead_letters
    rows = processed.rows
    assert rows is not None and len(rows) == len(spans)
    return rows.set_index("span_id")


def attrs(span: dict[str, object]) -> dict[str, str]:
    attributes = span["attributes"]
    assert isinstance(attributes, dict)
    return attributes


def test_openinference_openai_agent_trace(catalog: PriceCatalog) -> None:
    spans = decoded(
        [
            pb_span(1, None, "support_agent", 0.0, 3.0, {"openinference.span.kind": "AGENT", "session.id": "s-9"}),
            pb_span(
                2,
                1,
                "ChatCompletion",
                0.1,
                1.5,
                {
                    "openinference.span.kind": "LLM",
                    "llm.provider": "openai",
                    "llm.system": "openai",
                    "llm.model_name": "gpt-4o-2024-08-06",
                    "llm.invocation_parameters": '{"model": "gpt-4o", "temperature": 0}',
                    "llm.token_count.prompt": 2_000,
                    "llm.token_count.completion": 150,
                    "llm.token_count.total": 2_150,
                    "llm.token_count.prompt_details.cache_read": 1_536,
                    "llm.token_count.completion_details.reasoning": 0,
                    "input.value": '{"messages": "SECRET"}',
                    "output.value": "SECRET",
                    "llm.input_messages.0.message.role": "user",
                    "llm.input_messages.0.message.content": "SECRET",
                    "llm.output_messages.0.message.content": "SECRET",
                    "session.id": "s-9",
                    "user.id": "alice@example.com",
                },
            ),
            pb_span(
                3,
                1,
                "OpenAI.embeddings",
                1.5,
                1.6,
                {
                    "openinference.span.kind": "EMBEDDING",
                    "llm.system": "openai",
                    "embedding.model_name": "text-embedding-3-small",
                    "llm.token_count.prompt": 12,
                    "embedding.embeddings.0.embedding.text": "SECRET",
                    "embedding.embeddings.0.embedding.vector": [0.1, 0.2],
                },
            ),
            pb_span(
                4,
                1,
                "retrieve",
                1.6,
                1.7,
                {
                    "openinference.span.kind": "RETRIEVER",
                    "retrieval.documents.0.document.id": "doc-7",
                    "retrieval.documents.0.document.score": 0.82,
                    "retrieval.documents.0.document.content": "SECRET",
                    "retrieval.documents.1.document.id": "doc-3",
                    "retrieval.documents.1.document.score": 0.41,
                    "retrieval.documents.1.document.metadata": '{"source": "SECRET"}',
                },
            ),
            pb_span(5, 1, "lookup_order", 1.7, 1.8, {"openinference.span.kind": "TOOL", "tool.name": "lookup_order"}),
            pb_span(6, 1, "rerank", 1.8, 1.9, {"openinference.span.kind": "RERANKER", "reranker.query": "SECRET"}),
            pb_span(7, 1, "faithfulness", 2.0, 2.1, {"openinference.span.kind": "EVALUATOR"}),
            pb_span(8, 1, "RunnableSequence", 2.1, 2.9, {"openinference.span.kind": "CHAIN"}),
        ]
    )
    root, chat, embedding, retriever, tool, rerank, evaluator, chain = spans.values()
    assert (root["kind"], root["session_id"]) == ("request", "s-9")
    assert {key: chat.get(key) for key in ("kind", "provider", "model_response", "session_id")} == {
        "kind": "llm",
        "provider": "openai",
        "model_response": "gpt-4o-2024-08-06",
        "session_id": "s-9",
    }
    assert (chat["input_tokens"], chat["output_tokens"], chat["cache_read_tokens"], chat["reasoning_tokens"]) == (
        2_000,
        150,
        1_536,
        0,
    )
    assert attrs(chat)["spanline.convention"] == "openinference"
    assert attrs(chat)["openinference.span.kind"] == "LLM"
    assert attrs(chat)["llm.token_count.total"] == "2150"
    assert not any(key.startswith(("input.", "output.", "llm.input", "llm.output", "user.")) for key in attrs(chat))
    assert "alice" not in orjson.dumps(chat).decode()
    assert (
        embedding["kind"],
        embedding["embedding_model"],
        embedding["model_requested"],
        embedding["input_tokens"],
    ) == (
        "embedding",
        "text-embedding-3-small",
        "text-embedding-3-small",
        12,
    )
    assert retriever["kind"] == "retrieval"
    assert (retriever["retrieval_doc_ids"], retriever["retrieval_scores"]) == (["doc-7", "doc-3"], [0.82, 0.41])
    assert (tool["kind"], tool["tool_name"]) == ("tool", "lookup_order")
    assert (rerank["kind"], evaluator["kind"], chain["kind"]) == ("rerank", "eval", "agent_step")

    rows = stored([chat, embedding], catalog)
    assert (rows["cost_known"] == 1).all() and (rows["cost_usd"] > 0).all()


def test_openllmetry_anthropic_workflow_with_raw_counts(catalog: PriceCatalog) -> None:
    """An OpenLLMetry trace whose chat span passes Anthropic's raw usage through (input without cache)."""
    spans = decoded(
        [
            pb_span(
                1,
                None,
                "answer_question.workflow",
                0.0,
                4.0,
                {"traceloop.span.kind": "workflow", "traceloop.entity.name": "answer_question"},
            ),
            pb_span(
                2,
                1,
                "plan.task",
                0.1,
                3.0,
                {"traceloop.span.kind": "task", "traceloop.entity.name": "plan", "traceloop.entity.input": "SECRET"},
            ),
            pb_span(
                3,
                2,
                "anthropic.chat",
                0.2,
                2.0,
                {
                    "llm.request.type": "chat",
                    "gen_ai.system": "Anthropic",
                    "gen_ai.request.model": "claude-sonnet-4-5",
                    "gen_ai.response.model": "claude-sonnet-4-5-20250929",
                    "gen_ai.usage.prompt_tokens": 120,
                    "gen_ai.usage.completion_tokens": 400,
                    "gen_ai.usage.cache_read_input_tokens": 9_000,
                    "gen_ai.usage.cache_creation_input_tokens": 1_000,
                    "llm.usage.total_tokens": 520,
                    "gen_ai.prompt.0.role": "user",
                    "gen_ai.prompt.0.content": "SECRET",
                    "gen_ai.completion.0.content": "SECRET",
                },
            ),
            pb_span(
                4,
                2,
                "search_docs.tool",
                2.0,
                2.5,
                {"traceloop.span.kind": "tool", "traceloop.entity.name": "search_docs"},
            ),
            pb_span(5, 2, "cohere.rerank", 2.5, 2.6, {"llm.request.type": "rerank", "gen_ai.system": "Cohere"}),
        ]
    )
    workflow, task, chat, tool, rerank = spans.values()
    assert (workflow["kind"], task["kind"], tool["kind"], rerank["kind"]) == ("request", "agent_step", "tool", "rerank")
    assert tool["tool_name"] == "search_docs"
    assert attrs(workflow)["traceloop.entity.name"] == "answer_question"
    assert (chat["kind"], chat["provider"]) == ("llm", "anthropic")
    assert (chat["input_tokens"], chat["cache_read_tokens"], chat["cache_write_tokens"]) == (10_120, 9_000, 1_000)
    assert attrs(chat)["spanline.raw_input_tokens"] == "120"
    assert attrs(chat)["spanline.provider_as_sent"] == "Anthropic"
    assert attrs(chat)["spanline.convention"] == "openllmetry"
    assert attrs(workflow)["spanline.convention"] == "openllmetry"

    row = stored([chat], catalog).loc["0000000000000003"]
    usage = Usage(input_tokens=10_120, cache_read_tokens=9_000, cache_write_tokens=1_000, output_tokens=400)
    expected = calc_price(usage, "claude-sonnet-4-5-20250929", provider_id="anthropic", genai_request_timestamp=at(0.2))
    assert row["cost_known"] == 1
    assert row["cost_usd"] == pytest.approx(float(expected.total_price), rel=1e-12)


def test_openlit_reasoning_span_keeps_reported_cost() -> None:
    spans = decoded(
        [
            pb_span(
                1,
                None,
                "chat o3-mini",
                0.0,
                2.0,
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.system": "openai",
                    "gen_ai.request.model": "o3-mini",
                    "gen_ai.response.model": "o3-mini-2025-01-31",
                    "gen_ai.usage.input_tokens": 300,
                    "gen_ai.usage.output_tokens": 900,
                    "gen_ai.usage.reasoning_tokens": 640,
                    "gen_ai.usage.total_tokens": 1_200,
                    "gen_ai.usage.cost": 0.00429,
                    "gen_ai.content.prompt": "SECRET",
                    "gen_ai.content.completion": "SECRET",
                },
            ),
            pb_span(2, 1, "retrieve", 0.1, 0.2, {"gen_ai.operation.name": "vectordb", "db.system.name": "chroma"}),
            pb_span(3, 1, "crew", 0.2, 0.3, {"gen_ai.operation.name": "invoke_workflow"}),
        ],
        {"service.name": "rag-app", "telemetry.sdk.name": "openlit"},
    )
    chat, vectordb, workflow = spans.values()
    assert (chat["kind"], chat["provider"], chat["model_response"]) == ("llm", "openai", "o3-mini-2025-01-31")
    assert (chat["input_tokens"], chat["output_tokens"], chat["reasoning_tokens"]) == (300, 900, 640)
    assert chat["cost_usd_reported"] == pytest.approx(0.00429)
    assert attrs(chat)["spanline.convention"] == "openlit"
    assert (vectordb["kind"], workflow["kind"]) == ("retrieval", "agent_step")


def test_otel_genai_gemini_thinking_counts_beside_output_are_included() -> None:
    """Raw counts the other way round: Gemini reports thinking tokens beside the candidates."""
    span = one_span(
        {
            "gen_ai.operation.name": "generate_content",
            "gen_ai.provider.name": "gcp.vertex_ai",
            "gen_ai.request.model": "gemini-2.5-flash",
            "gen_ai.usage.input_tokens": 50,
            "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.reasoning.output_tokens": 300,
        }
    )
    assert (span["provider"], span["output_tokens"], span["reasoning_tokens"]) == ("google", 320, 300)
    assert attrs(span)["spanline.raw_output_tokens"] == "20"
    assert attrs(span)["spanline.provider_as_sent"] == "gcp.vertex_ai"
    assert attrs(span)["spanline.convention"] == "otel-genai"


def test_inclusive_counts_are_copied_not_summed() -> None:
    span = one_span(
        {
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.usage.input_tokens": 10_000,
            "gen_ai.usage.cache_read.input_tokens": 9_000,
            "gen_ai.usage.cache_creation.input_tokens": 1_000,
        }
    )
    assert span["input_tokens"] == 10_000
    assert "spanline.raw_input_tokens" not in attrs(span)


def test_cache_reads_are_priced_at_the_cached_rate(catalog: PriceCatalog) -> None:
    span = one_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 10_000,
            "gen_ai.usage.cache_read.input_tokens": 8_000,
            "gen_ai.usage.output_tokens": 100,
        }
    )
    row = stored([span], catalog).iloc[0]
    rates = calc_price(Usage(input_tokens=1), "gpt-4o", provider_id="openai", genai_request_timestamp=at(0))
    cached = calc_price(
        Usage(input_tokens=8_000, cache_read_tokens=8_000),
        "gpt-4o",
        provider_id="openai",
        genai_request_timestamp=at(0),
    )
    assert row["cache_read_cost_usd"] == pytest.approx(float(cached.input_price), rel=1e-12)
    assert row["cache_read_cost_usd"] < 8_000 * float(rates.input_price) / 1.5  # well below the full input rate
    assert row["input_cost_usd"] == pytest.approx(2_000 * float(rates.input_price), rel=1e-12)


@pytest.mark.parametrize(
    ("sent", "model", "provider"),
    [
        # OTel GenAI gen_ai.provider.name values
        ("openai", "gpt-4o", "openai"),
        ("anthropic", "claude-sonnet-4-5", "anthropic"),
        ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", "aws"),
        ("azure.ai.inference", "gpt-4o", "azure"),
        ("azure.ai.openai", "gpt-4o", "azure"),
        ("gcp.gen_ai", "gemini-2.0-flash", "google"),
        ("gcp.vertex_ai", "gemini-2.0-flash", "google"),
        ("gcp.gemini", "gemini-2.0-flash", "google"),
        ("cohere", "command-r-plus", "cohere"),
        ("deepseek", "deepseek-chat", "deepseek"),
        ("groq", "llama-3.3-70b-versatile", "groq"),
        ("mistral_ai", "mistral-large-latest", "mistral"),
        ("perplexity", "sonar", "perplexity"),
        ("x_ai", "grok-3", "x-ai"),
        # OpenInference llm.provider / llm.system values
        ("google", "gemini-2.0-flash", "google"),
        ("azure", "gpt-4o", "azure"),
        ("aws", "anthropic.claude-3-5-sonnet-20240620-v1:0", "aws"),
        ("mistralai", "mistral-large-latest", "mistral"),
        ("xai", "grok-3", "x-ai"),
        ("vertexai", "gemini-2.0-flash", "google"),
    ],
)
def test_provider_aliases_resolve_to_a_priced_span(sent: str, model: str, provider: str, catalog: PriceCatalog) -> None:
    span = one_span(
        {
            "gen_ai.provider.name": sent,
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": 1_000,
            "gen_ai.usage.output_tokens": 100,
        }
    )
    assert span["provider"] == provider
    row = stored([span], catalog).iloc[0]
    # deepseek-chat is priced by a price correction (streams/pricing/corrections.yaml), the rest by the catalog
    assert row["cost_known"] == 1 and row["price_source"] in ("genai-prices", "correction")
    assert row["cost_usd"] > 0


def test_canonical_spans_with_a_convention_spelling_are_priced_too(catalog: PriceCatalog) -> None:
    """The resolver reads the same alias table: an SDK span sending ``x_ai`` is priced as x-ai."""
    span = {
        "span_id": "s1",
        "trace_id": "t1",
        "service": "svc",
        "kind": "llm",
        "provider": "x_ai",
        "model_requested": "grok-3",
        "start_time": at(0),
        "duration_ms": 10.0,
        "input_tokens": 1_000,
    }
    row = stored([span], catalog).iloc[0]
    assert row["provider"] == "x_ai"  # stored as sent; only the price lookup aliases it
    assert row["cost_known"] == 1 and row["cost_usd"] > 0


@pytest.mark.parametrize(
    ("attributes", "parent", "kind"),
    [
        ({"openinference.span.kind": "AGENT"}, None, "request"),
        ({"openinference.span.kind": "AGENT"}, 1, "agent_step"),
        ({"openinference.span.kind": "CHAIN"}, None, "request"),
        ({"openinference.span.kind": "GUARDRAIL"}, 1, "eval"),
        ({"openinference.span.kind": "UNKNOWN", "llm.model_name": "gpt-4o"}, 1, "llm"),
        ({"traceloop.span.kind": "agent"}, None, "request"),
        ({"traceloop.span.kind": "workflow"}, 1, "agent_step"),
        ({"llm.request.type": "embedding"}, 1, "embedding"),
        ({"llm.request.type": "completion"}, 1, "llm"),
        ({"gen_ai.operation.name": "invoke_agent", "openinference.span.kind": "LLM"}, None, "request"),
    ],
)
def test_family_kind(attributes: dict[str, Any], parent: int | None, kind: str) -> None:
    assert one_span(attributes, parent=parent)["kind"] == kind


def test_an_index_build_span_carries_its_index_and_counts() -> None:
    span = one_span(
        {
            "spanline.kind": "index_build",
            "gen_ai.data_source.id": "acme-docs",
            "spanline.index_documents": 4_812,
            "spanline.index_chunks": 20_311,
        },
        parent=None,
    )
    assert (span["kind"], span["index_name"], span["index_documents"], span["index_chunks"]) == (
        "index_build",
        "acme-docs",
        4_812,
        20_311,
    )
