"""OTLP/HTTP traces following the OpenTelemetry GenAI conventions -> canonical span dicts.

docs/requirements.md §2 accepts OTLP next to Spanline's own format, so teams already instrumented with
OpenTelemetry (gen_ai.* attributes) need no second SDK. The result is *not* validated: the
receiver validates it with :class:`~spanline.contract.schema.Span`, reports per-item errors
and sets ``tenant_id`` from the API key (never from the payload, so it is never set here).

Choices the conventions leave open:

* **kind** — ``spanline.kind`` wins; else ``gen_ai.operation.name`` (chat, text_completion,
  generate_content -> llm; embeddings -> embedding; execute_tool -> tool; invoke_agent,
  create_agent -> agent_step; retrieval, search_memory -> retrieval). Spans without a known
  operation are ``llm`` if they name a model (older instrumentations set no operation),
  ``tool`` if they name a tool, else ``request`` for a root span and ``agent_step`` otherwise.
* **errors** — status is ``error`` only for OTLP status ERROR. ``error_type`` comes from
  ``error.type`` (an ErrorType value, an HTTP status or an exception class such as
  ``openai.RateLimitError``), else from the ``exception`` event's ``exception.type``, else from
  ``http.response.status_code``; anything unrecognised is ``other``.
* **feature** — ``spanline.feature`` or ``app.feature`` on the span, else on the resource.
* **tokens** are copied, never summed: in the conventions, as in the schema,
  ``input_tokens`` already includes the cache read/creation tokens and ``output_tokens``
  already includes the reasoning tokens.
* **attributes** keeps every unmapped attribute as text (non-strings JSON-encoded) and the
  unmapped resource attributes as ``resource.<key>``. Mapped attributes are dropped unless the
  mapping loses information: ``error.type``, ``gen_ai.operation.name`` and multi-valued
  ``gen_ai.response.finish_reasons`` are also kept verbatim. The map is fitted to the schema's
  limits (256 entries, span attributes before resource ones; values cut at 4,096 characters)
  so that one oversized debug attribute cannot get the whole span, tokens and cost, rejected.
* **never stored**: message content (content capture is off by default, docs/requirements.md §8) and raw user
  ids (``user.id``, ``enduser.id``): they could only be hashed with the tenant's salt, which
  this decoder does not know; send ``spanline.user_id_hash`` instead.
* ``spanline.<field>`` attributes set any schema field directly (values pass through, typed, to
  validation) except identity, times, ``tenant_id`` and ``content``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from spanline.collectors.otlp_wire import STATUS_ERROR, OtlpBlock, OtlpSpan, parse_json, parse_protobuf
from spanline.contract.schema import ErrorType, Span

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_UNIX_NANOS = int((datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH).total_seconds()) * 10**9
_MAX_ATTRIBUTES = 256
_MAX_KEY = 256
_MAX_VALUE = 4096

_KIND_BY_OPERATION = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "embeddings": "embedding",
    "execute_tool": "tool",
    "invoke_agent": "agent_step",
    "create_agent": "agent_step",
    "retrieval": "retrieval",
    "search_memory": "retrieval",
}

#: Convention attribute -> span field; "_" names are intermediate values resolved per span.
_FIELD_BY_KEY = {
    "gen_ai.operation.name": "_operation",
    "gen_ai.provider.name": "provider",
    "gen_ai.request.model": "model_requested",
    "gen_ai.response.model": "model_response",
    "gen_ai.response.finish_reasons": "_finish_reasons",
    "gen_ai.response.time_to_first_chunk": "_ttft_s",
    "gen_ai.usage.input_tokens": "input_tokens",
    "gen_ai.usage.output_tokens": "output_tokens",
    "gen_ai.usage.cache_read.input_tokens": "cache_read_tokens",
    "gen_ai.usage.cache_creation.input_tokens": "cache_write_tokens",
    "gen_ai.usage.reasoning.output_tokens": "reasoning_tokens",
    "gen_ai.tool.name": "tool_name",
    "gen_ai.conversation.id": "session_id",
    "gen_ai.prompt.name": "prompt_id",
    "gen_ai.data_source.id": "index_name",
    "gen_ai.retrieval.documents": "_documents",
    "server.address": "endpoint",
    "http.response.status_code": "http_status",
    "error.type": "_error_type",
    "app.feature": "feature",
}
#: Older or non-standard names, used only when the current attribute is absent.
_FIELD_BY_OLD_KEY = {
    "gen_ai.system": "provider",
    "gen_ai.usage.prompt_tokens": "input_tokens",
    "gen_ai.usage.completion_tokens": "output_tokens",
    "gen_ai.server.time_to_first_token": "_ttft_s",
    "http.status_code": "http_status",
}

#: Attributes that carry prompts, completions, tool payloads or raw user ids.
_NEVER_KEPT = frozenset(
    {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.tool.definitions",
        "gen_ai.retrieval.query.text",
        "gen_ai.memory.content",
        "gen_ai.memory.query",
        "gen_ai.prompt",
        "gen_ai.completion",
        "user.id",
        "enduser.id",
        "spanline.tenant_id",
        "spanline.content",
    }
)
#: Indexed content of older instrumentations, e.g. ``gen_ai.prompt.0.content``.
_INDEXED_CONTENT = re.compile(r"gen_ai\.(?:prompt|completion)\.\d+\.")
_INDEXED_PREFIXES = ("gen_ai.prompt.", "gen_ai.completion.")

_OTLP_OWNED = {"schema_version", "span_id", "trace_id", "parent_span_id", "start_time", "end_time", "duration_ms"}
_SPANLINE_FIELDS = frozenset(Span.model_fields) - _OTLP_OWNED - {"tenant_id", "content", "attributes"}

_ERROR_TYPES = frozenset(ErrorType)
#: Substrings of a normalised error.type (lowercase, no '_' or '-', module path removed).
_ERROR_NEEDLES = (
    ("ratelimit", ErrorType.RATE_LIMITED),
    ("toomanyrequests", ErrorType.RATE_LIMITED),
    ("resourceexhausted", ErrorType.RATE_LIMITED),
    ("contextlength", ErrorType.CONTEXT_LENGTH_EXCEEDED),
    ("contextwindow", ErrorType.CONTEXT_LENGTH_EXCEEDED),
    ("contentfilter", ErrorType.CONTENT_FILTER),
    ("contentpolicy", ErrorType.CONTENT_FILTER),
    ("timeout", ErrorType.TIMEOUT),
    ("timedout", ErrorType.TIMEOUT),
    ("deadlineexceeded", ErrorType.TIMEOUT),
    ("cancel", ErrorType.CANCELLED),
    ("refusal", ErrorType.REFUSAL),
    ("internalserver", ErrorType.SERVER_ERROR),
    ("serviceunavailable", ErrorType.SERVER_ERROR),
    ("badgateway", ErrorType.SERVER_ERROR),
    ("overloaded", ErrorType.SERVER_ERROR),
    ("servererror", ErrorType.SERVER_ERROR),
)


def decode_otlp(body: bytes, content_type: str) -> list[dict[str, object]]:
    """Canonical span dicts (unvalidated, no tenant_id) for an OTLP/HTTP trace export body.

    Raises ``ValueError`` when the body is not OTLP in the given Content-Type.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        blocks = parse_json(body)
    elif media_type in ("application/x-protobuf", "application/protobuf"):
        blocks = parse_protobuf(body)
    else:
        raise ValueError(f"unsupported Content-Type {content_type!r}: use application/json or application/x-protobuf")
    spans: list[dict[str, object]] = []
    for block in blocks:
        base, resource_extras = _resource_fields(block)
        spans.extend(_span_fields(span, base, resource_extras) for span in block.spans)
    return spans


def _resource_fields(block: OtlpBlock) -> tuple[dict[str, object], dict[str, str]]:
    """Fields shared by a block's spans, and its leftover attributes (scope + ``resource.*``)."""
    resource = dict(block.resource)
    base: dict[str, object] = {}
    _put(base, "service", resource.pop("service.name", None))
    _put(base, "environment", _take(resource, "deployment.environment.name", "deployment.environment"))
    _put(base, "feature", _take(resource, "spanline.feature", "app.feature"))
    extras = {"otel.scope.name": block.scope_name, "otel.scope.version": block.scope_version}
    extras = {key: value for key, value in extras.items() if value}
    extras.update((f"resource.{key}", _text(value)) for key, value in resource.items())
    return base, {key: value for key, value in extras.items() if len(key) <= _MAX_KEY}


def _span_fields(span: OtlpSpan, base: dict[str, object], resource_extras: dict[str, str]) -> dict[str, object]:
    """One pass over the span's attributes, sorting each into mapped, spanline, dropped or extra."""
    mapped: dict[str, Any] = {}
    old: dict[str, Any] = {}
    direct: dict[str, Any] = {}
    extras: dict[str, str] = {}
    for key, value in span.attributes.items():
        field = _FIELD_BY_KEY.get(key)
        if field is not None:
            if value is not None:
                mapped[field] = value
        elif (field := _FIELD_BY_OLD_KEY.get(key)) is not None:
            if value is not None:
                old[field] = value
        elif key.startswith("spanline.") and key[9:] in _SPANLINE_FIELDS:
            direct[key[9:]] = value
        elif key in _NEVER_KEPT or (key.startswith(_INDEXED_PREFIXES) and _INDEXED_CONTENT.match(key)):
            continue
        elif len(key) <= _MAX_KEY:
            extras[key] = _text(value)
    old.update(mapped)
    operation = old.pop("_operation", None)
    error_type = old.pop("_error_type", None)
    finish_reasons = old.pop("_finish_reasons", None)
    ttft_s = old.pop("_ttft_s", None)
    documents = old.pop("_documents", None)
    out: dict[str, object] = {
        "trace_id": span.trace_id or None,
        "span_id": span.span_id or None,
        "parent_span_id": span.parent_span_id or None,
        "name": span.name,
        "start_time": _time(span.start_ns),
        "end_time": _time(span.end_ns),
        "feature": "",
        "status": "error" if span.status_code == STATUS_ERROR else "ok",
        **base,
        **old,
    }
    if span.status_code == STATUS_ERROR:
        out["error_type"] = _error_type(
            span.exception_type if error_type is None else error_type, out.get("http_status")
        )
    if ttft_s is not None:
        out["ttft_ms"] = _seconds_to_ms(ttft_s)
    if finish_reasons is not None:
        _put(out, "finish_reason", _first_reason(finish_reasons))
    if documents is not None:
        _retrieval_documents(out, documents)
    out["kind"] = (_KIND_BY_OPERATION.get(operation) if isinstance(operation, str) else None) or _fallback_kind(out)
    out.update(direct)
    if out["kind"] == "embedding" and "embedding_model" not in out:
        _put(out, "embedding_model", out.get("model_requested") or out.get("model_response"))

    for key, value, lossy in (
        ("gen_ai.operation.name", operation, True),
        ("error.type", error_type, True),
        (
            "gen_ai.response.finish_reasons",
            finish_reasons,
            isinstance(finish_reasons, list) and len(finish_reasons) > 1,
        ),
        ("otel.status_description", span.status_message or None, True),
    ):
        if lossy and value is not None:
            extras[key] = _text(value)
    out["attributes"] = _fit(extras, resource_extras)
    return out


def _fallback_kind(out: dict[str, object]) -> str:
    if "model_requested" in out or "model_response" in out:
        return "llm"
    if "tool_name" in out:
        return "tool"
    return "agent_step" if out["parent_span_id"] else "request"


def _error_type(raw: object, http_status: object) -> str:
    """Map an ``error.type`` (status code, exception class or Spanline name) onto ErrorType."""
    if raw is None:
        return _error_from_http(http_status)
    text = str(raw).strip().lower()
    if text in _ERROR_TYPES:
        return text
    if text.isdigit():
        return _error_from_http(text)
    compact = text.rsplit(".", 1)[-1].replace("_", "").replace("-", "")
    for needle, error_type in _ERROR_NEEDLES:
        if needle in compact:
            return error_type.value
    return _error_from_http(http_status)


def _error_from_http(status: object) -> str:
    try:
        code = int(str(status))
    except ValueError:
        return ErrorType.OTHER.value
    if code == 429:
        return ErrorType.RATE_LIMITED.value
    if code in (408, 504):
        return ErrorType.TIMEOUT.value
    if 500 <= code <= 599:
        return ErrorType.SERVER_ERROR.value
    return ErrorType.OTHER.value


def _retrieval_documents(out: dict[str, object], documents: object) -> None:
    """gen_ai.retrieval.documents ([{id, score, ...}], structured or as JSON text) -> ids, scores.

    Only ids and scores are kept; any document text is content and is dropped.
    """
    if isinstance(documents, str):
        try:
            documents = orjson.loads(documents)
        except orjson.JSONDecodeError:
            return
    if not isinstance(documents, list) or not all(isinstance(doc, dict) for doc in documents):
        return
    out["retrieval_doc_ids"] = [str(doc.get("id", "")) for doc in documents]
    scores = [doc.get("score") for doc in documents]
    if all(isinstance(score, (int, float)) and not isinstance(score, bool) for score in scores):
        out["retrieval_scores"] = scores


def _first_reason(reasons: object) -> object:
    if isinstance(reasons, list):
        return reasons[0] if reasons else None
    return reasons


def _seconds_to_ms(value: object) -> object:
    """Seconds -> milliseconds; a non-number is passed on for validation to reject."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value) * 1000.0
        except ValueError:
            return value
    return value


def _time(unix_nanos: int) -> datetime | None:
    """OTLP unix nanoseconds -> UTC datetime (microseconds); 0 (unset in OTLP) or a value past
    year 9999 gives None, which validation reports for that span alone."""
    if not 0 < unix_nanos < _MAX_UNIX_NANOS:
        return None
    return _EPOCH + timedelta(microseconds=unix_nanos // 1000)


def _take(attrs: dict[str, Any], key: str, alias: str) -> object:
    """Pop a convention's current key and its older alias; the current one wins."""
    current, old = attrs.pop(key, None), attrs.pop(alias, None)
    return old if current is None else current


def _put(out: dict[str, object], field: str, value: object) -> None:
    if value is not None:
        out[field] = value


def _text(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text[:_MAX_VALUE]


def _fit(extras: dict[str, str], resource_extras: dict[str, str]) -> dict[str, str]:
    """Span attributes win over scope/resource ones, within the schema's 256 entries."""
    if len(extras) + len(resource_extras) <= _MAX_ATTRIBUTES:
        return {**resource_extras, **extras}
    fitted = dict(list(extras.items())[:_MAX_ATTRIBUTES])
    for key, value in resource_extras.items():
        if len(fitted) >= _MAX_ATTRIBUTES:
            break
        fitted.setdefault(key, value)
    return fitted
