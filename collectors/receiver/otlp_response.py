"""The receiver's OTLP/HTTP answers, in the request's encoding (binary protobuf or OTLP/JSON).

OTLP/HTTP (opentelemetry-proto, docs/specification.md, "OTLP/HTTP Response"): a partially accepted
export is 200 with ``partial_success`` holding the number of rejected spans and a human-readable
``error_message``; every 4xx/5xx body is a ``google.rpc.Status`` whose ``message`` says what failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
from aiohttp import web
from google.protobuf import json_format
from google.rpc.code_pb2 import Code
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from spanline.contract.validation import InvalidItem

PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf")
#: Rejected spans named one by one in ``error_message``; the rest are counted.
NAMED_SPANS = 20
#: Longest reason quoted for one span, so a huge batch of huge errors stays a readable message.
REASON_CHARS = 300
#: google.rpc codes for the statuses the receiver answers (OTLP clients may record them).
_CODES = {
    400: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    413: Code.RESOURCE_EXHAUSTED,
    415: Code.INVALID_ARGUMENT,
    503: Code.UNAVAILABLE,
}


def rejection_message(invalid: Sequence[InvalidItem]) -> str:
    """Each rejected span by span id (hex) with its reason; past :data:`NAMED_SPANS`, how many more."""
    named = [f"span {_span_name(item)}: {_reason(item)}" for item in invalid[:NAMED_SPANS]]
    if len(invalid) > NAMED_SPANS:
        named.append(f"and {len(invalid) - NAMED_SPANS} more rejected spans (each is in the dead-letter topic)")
    return "; ".join(named)


def export_response(invalid: Sequence[InvalidItem], content_type: str) -> web.Response:
    """200 with an ExportTraceServiceResponse; ``partial_success`` only when spans were rejected."""
    response = ExportTraceServiceResponse()
    if invalid:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=len(invalid), error_message=rejection_message(invalid))
        )
    return _encoded(response, 200, content_type, {})


def failure_response(status: int, message: str, content_type: str, headers: Mapping[str, str]) -> web.Response:
    """A 4xx/5xx answer whose body is a google.rpc.Status; ``headers`` (Retry-After, …) are kept."""
    failure = Status(code=_CODES.get(status, Code.UNKNOWN), message=message)
    return _encoded(failure, status, content_type, {k: v for k, v in headers.items() if k.lower() != "content-type"})


def error_text(exc: web.HTTPException) -> str:
    """The message of a receiver error answer (``{"error": …}``), or aiohttp's own text."""
    text = exc.text or exc.reason
    try:
        decoded = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    return str(decoded["error"]) if isinstance(decoded, dict) and "error" in decoded else text


def _encoded(
    message: ExportTraceServiceResponse | Status, status: int, content_type: str, headers: Mapping[str, str]
) -> web.Response:
    if content_type in PROTOBUF_TYPES:
        return web.Response(status=status, body=message.SerializeToString(), content_type=content_type, headers=headers)
    body = orjson.dumps(json_format.MessageToDict(message))  # lowerCamelCase keys, as OTLP/JSON
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def _span_name(item: InvalidItem) -> str:
    span_id = item.item.get("span_id") if isinstance(item.item, dict) else None
    return span_id if isinstance(span_id, str) and span_id else f"#{item.index} (no span id)"


def _reason(item: InvalidItem) -> str:
    reason = ", ".join(f"{e.field}: {e.message}" if e.field else e.message for e in item.errors)
    return reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 1] + "…"
