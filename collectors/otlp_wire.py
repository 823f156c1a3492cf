"""OTLP/HTTP trace bodies (JSON or protobuf) reduced to plain Python records.

Both wire formats become the same small records (ids as lowercase hex, times as unix
nanoseconds, attribute values as plain Python values), so the GenAI mapping in
:mod:`spanline.collectors.otlp` is written once. A body that is not well-formed OTLP raises
``ValueError`` and is rejected whole, as the OpenTelemetry Collector does; odd *values* inside
well-formed spans are passed on, so schema validation can reject just those spans.

Content is never decoded here: span events are skipped except ``exception`` events, of which
only ``exception.type`` is read (it classifies errors when ``error.type`` is missing).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

#: OTLP status codes (opentelemetry.proto.trace.v1.Status.StatusCode).
STATUS_ERROR = 2
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_TRACE_ID_BYTES = 16
_SPAN_ID_BYTES = 8
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_PB_SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


class OtlpSpan(NamedTuple):
    """One OTLP span, wire format already removed."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    exception_type: str | None


class OtlpBlock(NamedTuple):
    """The spans of one (resource, instrumentation scope) pair."""

    resource: dict[str, Any]
    scope_name: str
    scope_version: str
    spans: list[OtlpSpan]


# --- protobuf ------------------------------------------------------------------------------


def _pb_value(value: AnyValue) -> Any:
    """AnyValue -> str, bool, int, float, list, dict or None; bytes become base64 text."""
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_pb_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None if which is None else getattr(value, which)


def _pb_attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """Scalars (nearly all attributes) are read inline: a call per attribute is the hot cost."""
    out: dict[str, Any] = {}
    for kv in pairs:
        value = kv.value
        which = value.WhichOneof("value")
        out[kv.key] = getattr(value, which) if which in _PB_SCALARS else _pb_value(value)
    return out


def _pb_id(raw: bytes, size: int, what: str) -> str:
    if raw and len(raw) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw.hex()


def _pb_exception_type(events: Iterable[PbSpan.Event]) -> str | None:
    for event in events:
        if event.name == "exception":
            for kv in event.attributes:
                if kv.key == "exception.type":
                    found = _pb_value(kv.value)
                    return found if isinstance(found, str) else None
    return None


def parse_protobuf(body: bytes) -> list[OtlpBlock]:
    """An ExportTraceServiceRequest in protobuf binary encoding."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise ValueError(f"body is not an OTLP ExportTraceServiceRequest (protobuf): {exc}") from exc
    if body and not request.resource_spans:
        raise ValueError("protobuf body holds no resource_spans: not an OTLP trace export")
    blocks: list[OtlpBlock] = []
    for r_index, resource_spans in enumerate(request.resource_spans):
        resource = _pb_attributes(resource_spans.resource.attributes)
        for s_index, scope_spans in enumerate(resource_spans.scope_spans):
            spans: list[OtlpSpan] = []
            for index, span in enumerate(scope_spans.spans):
                try:
                    spans.append(
                        OtlpSpan(
                            _pb_id(span.trace_id, _TRACE_ID_BYTES, "trace_id"),
                            _pb_id(span.span_id, _SPAN_ID_BYTES, "span_id"),
                            _pb_id(span.parent_span_id, _SPAN_ID_BYTES, "parent_span_id"),
                            span.name,
                            span.start_time_unix_nano,
                            span.end_time_unix_nano,
                            span.status.code,
                            span.status.message,
                            _pb_attributes(span.attributes),
                            _pb_exception_type(span.events),
                        )
                    )
                except ValueError as exc:
                    raise ValueError(f"resource_spans[{r_index}].scope_spans[{s_index}].spans[{index}]: {exc}") from exc
            scope = scope_spans.scope
            blocks.append(OtlpBlock(resource, scope.name, scope.version, spans))
    return blocks


# --- JSON ----------------------------------------------------------------------------------


def _j_string(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {type(raw).__name__}")
    return raw


def _j_bool(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"expected a boolean, got {type(raw).__name__}")
    return raw


def _j_int(raw: Any) -> int:
    """OTLP/JSON int64: a decimal string or a JSON number."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ValueError(f"expected an int64 (number or decimal string), got {raw!r}")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"expected an int64 (number or decimal string), got {raw!r}") from None
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"{raw!r} is outside int64")
    return value


def _j_double(raw: Any) -> float:
    """A JSON number, or one of the protobuf-JSON strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError(f"expected a double, got {raw!r}")
    return float(raw)


def _j_list(container: dict[str, Any], key: str) -> list[Any]:
    found = container.get(key, [])
    if not isinstance(found, list):
        raise ValueError(f"{key} must be an array")
    return found


def _j_object(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be an object")
    return raw


def _j_array(raw: Any) -> list[Any]:
    return [_j_value(item) for item in _j_list(_j_object(raw, "arrayValue"), "values")]


def _j_kvlist(raw: Any) -> dict[str, Any]:
    return _j_attributes(_j_list(_j_object(raw, "kvlistValue"), "values"))


_J_ANY: dict[str, Callable[[Any], Any]] = {
    "stringValue": _j_string,
    "boolValue": _j_bool,
    "intValue": _j_int,
    "doubleValue": _j_double,
    "arrayValue": _j_array,
    "kvlistValue": _j_kvlist,
    "bytesValue": _j_string,
}


def _j_value(raw: Any) -> Any:
    """An OTLP/JSON AnyValue object; an empty one is null."""
    for kind, inner in _j_object(raw, "AnyValue").items():
        convert = _J_ANY.get(kind)
        if convert is not None:
            return convert(inner)
    return None


def _j_attributes(pairs: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        kv = _j_object(pair, "KeyValue")
        out[_j_string(kv.get("key"))] = _j_value(kv.get("value", {}))
    return out


def _j_id(raw: Any, size: int, what: str) -> str:
    """OTLP/JSON ids are hex strings (not base64, unlike the generic protobuf JSON mapping)."""
    text = _j_string(raw).lower()
    if not text:
        return text
    try:
        valid = len(text) == 2 * size and len(bytes.fromhex(text)) == size
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(f"{what} must be {2 * size} hex characters, got {raw!r}")
    return text


def _j_status(raw: Any) -> tuple[int, str]:
    status = _j_object(raw, "status")
    code = status.get("code", 0)
    if isinstance(code, str) and code in _STATUS_NAMES:
        code = _STATUS_NAMES[code]
    return _j_int(code), _j_string(status.get("message", ""))


def _j_exception_type(events: list[Any]) -> str | None:
    for raw in events:
        event = _j_object(raw, "event")
        if event.get("name") == "exception":
            found = _j_attributes(_j_list(event, "attributes")).get("exception.type")
            return found if isinstance(found, str) else None
    return None


def _j_span(raw: Any) -> OtlpSpan:
    span = _j_object(raw, "span")
    code, message = _j_status(span.get("status", {}))
    return OtlpSpan(
        _j_id(span.get("traceId", ""), _TRACE_ID_BYTES, "traceId"),
        _j_id(span.get("spanId", ""), _SPAN_ID_BYTES, "spanId"),
        _j_id(span.get("parentSpanId", ""), _SPAN_ID_BYTES, "parentSpanId"),
        _j_string(span.get("name", "")),
        _j_int(span.get("startTimeUnixNano", 0)),
        _j_int(span.get("endTimeUnixNano", 0)),
        code,
        message,
        _j_attributes(_j_list(span, "attributes")),
        _j_exception_type(_j_list(span, "events")),
    )


def parse_json(body: bytes) -> list[OtlpBlock]:
    """An ExportTraceServiceRequest in OTLP/JSON encoding (lowerCamelCase keys, hex ids)."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise ValueError("OTLP/JSON body must be an object with resourceSpans")
    blocks: list[OtlpBlock] = []
    for r_index, raw_resource_spans in enumerate(_j_list(request, "resourceSpans")):
        where = f"resourceSpans[{r_index}]"
        try:
            resource_spans = _j_object(raw_resource_spans, "ResourceSpans")
            resource = _j_attributes(_j_list(_j_object(resource_spans.get("resource", {}), "resource"), "attributes"))
            scope_list = _j_list(resource_spans, "scopeSpans")
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        for s_index, raw_scope_spans in enumerate(scope_list):
            where = f"resourceSpans[{r_index}].scopeSpans[{s_index}]"
            try:
                scope_spans = _j_object(raw_scope_spans, "ScopeSpans")
                scope = _j_object(scope_spans.get("scope", {}), "scope")
                scope_name, scope_version = _j_string(scope.get("name", "")), _j_string(scope.get("version", ""))
                raw_spans = _j_list(scope_spans, "spans")
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from exc
            spans: list[OtlpSpan] = []
            for index, raw_span in enumerate(raw_spans):
                try:
                    spans.append(_j_span(raw_span))
                except ValueError as exc:
                    raise ValueError(f"{where}.spans[{index}]: {exc}") from exc
            blocks.append(OtlpBlock(resource, scope_name, scope_version, spans))
    return blocks
