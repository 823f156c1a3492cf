"""OTLP/HTTP traces from the GenAI instrumentation families -> canonical span dicts.

docs/requirements.md §2 accepts OTLP next to Spanline's own format, so teams already instrumented with
OpenTelemetry need no second SDK. Four attribute families are read (README "OTLP attribute → span
field, per family" lists every key): the OTel GenAI conventions (current and deprecated names),
OpenInference (Arize Phoenix), OpenLLMetry (Traceloop) and OpenLIT. The family a span came in with
is kept as ``attributes["spanline.convention"]``. The result is *not* validated: the
receiver validates it with :class:`~spanline.contract.schema.Span`, reports per-item errors
and sets ``tenant_id`` from the API key (never from the payload, so it is never set here).

Choices the conventions leave open:

* **kind** — ``spanline.kind`` wins; else the first of ``gen_ai.operation.name``,
  ``openinference.span.kind``, ``llm.request.type``, ``traceloop.span.kind`` that names a known kind
  (tables below). Agents and workflows (``invoke_agent``, OpenInference AGENT/CHAIN, Traceloop
  workflow/agent) are ``request`` at the root and ``agent_step`` below it, so cost per successful
  task covers OTel traffic. Spans without a known kind are ``llm`` if they name a model (older
  instrumentations set no operation), ``tool`` if they name a tool, else ``request`` for a root
  span and ``agent_step`` otherwise.
* **provider** — stored as the price catalog's provider id (``spanline/contract/providers.py``);
  a different spelling as sent is kept as ``spanline.provider_as_sent``.
* **errors** — status is ``error`` only for OTLP status ERROR. ``error_type`` comes from
  ``error.type`` (an ErrorType value, an HTTP status or an exception class such as
  ``openai.RateLimitError``), else from the ``exception`` event's ``exception.type``, else from
  ``http.response.status_code``; anything unrecognised is ``other``.
* **feature** — ``spanline.feature`` or ``app.feature`` on the span, else on the resource.
* **tokens** are copied, never summed: in the conventions, as in the schema,
  ``input_tokens`` already includes the cache read/creation tokens and ``output_tokens``
  already includes the reasoning tokens. The exception is raw counts (Anthropic's API reports
  input without the cached part, Gemini's output without thinking): when the parts exceed the
  whole, which inclusive counts never do, the parts are added to it (:func:`_include_parts`).
* **attributes** keeps every unmapped attribute as text (non-strings JSON-encoded) and the
  unmapped resource attributes as ``resource.<key>``. Mapped attributes are dropped unless the
  mapping loses information: ``error.type``, ``gen_ai.operation.name`` and multi-valued
  ``gen_ai.response.finish_reasons`` are also kept verbatim. The map is fitted to the schema's
  limits (256 entries, span attributes before resource ones; values cut at 4,096 characters)
  so that one oversized debug attribute cannot get the whole span, tokens and cost, rejected.
* **never stored**: message content (content capture is off by default, docs/requirements.md §8;
  each family's prompt, completion, message, document and embedding attributes) and raw user
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
from spanline.contract.providers import catalog_provider
from spanline.contract.schema import ErrorType, Span

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_UNIX_NANOS = int((datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH).total_seconds()) * 10**9
_MAX_ATTRIBUTES = 256
_MAX_KEY = 256
_MAX_VALUE = 4096

#: Kinds that depend on the span's place: a root is the request (so cost per successful task
#: covers agent and workflow traffic), a nested one is a step of it.
_ROOT = "_root"
_KIND_BY_OPERATION = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "embeddings": "embedding",
    "embedding": "embedding",  # older OpenLIT
    "execute_tool": "tool",
    "invoke_agent": _ROOT,
    "invoke_workflow": _ROOT,  # OpenLIT frameworks and agent teams
    "workflow": _ROOT,  # older OpenLIT
    "create_agent": "agent_step",
    "execute_task": "agent_step",  # OpenLIT
    "retrieval": "retrieval",
    "search_memory": "retrieval",
    "vectordb": "retrieval",  # OpenLIT
}
#: OpenInference ``openinference.span.kind``.
_KIND_BY_OPENINFERENCE = {
    "LLM": "llm",
    "EMBEDDING": "embedding",
    "RETRIEVER": "retrieval",
    "RERANKER": "rerank",
    "TOOL": "tool",
    "EVALUATOR": "eval",
    "GUARDRAIL": "eval",
    "AGENT": _ROOT,
    "CHAIN": _ROOT,
}
#: OpenLLMetry ``llm.request.type``.
_KIND_BY_REQUEST_TYPE = {"chat": "llm", "completion": "llm", "embedding": "embedding", "rerank": "rerank"}
#: OpenLLMetry ``traceloop.span.kind``.
_KIND_BY_TRACELOOP = {"workflow": _ROOT, "agent": _ROOT, "task": "agent_step", "tool": "tool"}
#: Where the kind is read, first found wins (``spanline.kind`` beats them all).
_KIND_TABLES = (
    ("gen_ai.operation.name", _KIND_BY_OPERATION),
    ("openinference.span.kind", _KIND_BY_OPENINFERENCE),
    ("llm.request.type", _KIND_BY_REQUEST_TYPE),
    ("traceloop.span.kind", _KIND_BY_TRACELOOP),
)

#: Convention attribute -> (span field, rank): of several keys for one field the lowest rank
#: wins (0: OTel GenAI current; 1: deprecated or another family's; 2: a family's own fallback).
#: "_" names are intermediate values resolved per span.
_FIELD_BY_KEY: dict[str, tuple[str, int]] = {
    # OTel GenAI, current names
    "gen_ai.operation.name": ("_operation", 0),
    "gen_ai.provider.name": ("provider", 0),
    "gen_ai.request.model": ("model_requested", 0),
    "gen_ai.response.model": ("model_response", 0),
    "gen_ai.response.finish_reasons": ("_finish_reasons", 0),
    "gen_ai.response.time_to_first_chunk": ("_ttft_s", 0),
    "gen_ai.usage.input_tokens": ("input_tokens", 0),
    "gen_ai.usage.output_tokens": ("output_tokens", 0),
    "gen_ai.usage.cache_read.input_tokens": ("cache_read_tokens", 0),
    "gen_ai.usage.cache_creation.input_tokens": ("cache_write_tokens", 0),
    "gen_ai.usage.reasoning.output_tokens": ("reasoning_tokens", 0),
    "gen_ai.tool.name": ("tool_name", 0),
    "gen_ai.conversation.id": ("session_id", 0),
    "gen_ai.prompt.name": ("prompt_id", 0),
    "gen_ai.data_source.id": ("index_name", 0),
    "gen_ai.retrieval.documents": ("_documents", 0),
    "server.address": ("endpoint", 0),
    "http.response.status_code": ("http_status", 0),
    "error.type": ("_error_type", 0),
    "app.feature": ("feature", 0),
    # OTel GenAI deprecated names, also OpenLLMetry's and OpenLIT's
    "gen_ai.system": ("provider", 1),
    "gen_ai.usage.prompt_tokens": ("input_tokens", 1),
    "gen_ai.usage.completion_tokens": ("output_tokens", 1),
    "gen_ai.server.time_to_first_token": ("_ttft_s", 1),
    "http.status_code": ("http_status", 1),
    # OpenLLMetry
    "gen_ai.usage.cache_read_input_tokens": ("cache_read_tokens", 1),
    "gen_ai.usage.cache_creation_input_tokens": ("cache_write_tokens", 1),
    "llm.usage.reasoning_tokens": ("reasoning_tokens", 1),
    # OpenLIT
    "gen_ai.usage.reasoning_tokens": ("reasoning_tokens", 1),
    "gen_ai.usage.cost": ("cost_usd_reported", 1),
    # OpenInference
    "llm.provider": ("provider", 1),
    "llm.system": ("provider", 2),
    "llm.request.model_name": ("model_requested", 1),
    "llm.response.model_name": ("model_response", 1),
    "llm.model_name": ("model_response", 2),
    "llm.token_count.prompt": ("input_tokens", 1),
    "llm.token_count.completion": ("output_tokens", 1),
    "llm.token_count.prompt_details.cache_read": ("cache_read_tokens", 1),
    "llm.token_count.prompt_details.cache_write": ("cache_write_tokens", 1),
    "llm.token_count.completion_details.reasoning": ("reasoning_tokens", 1),
    "llm.token_count.prompt_details.audio": ("input_audio_tokens", 1),  # schema 1.1 token details
    "llm.token_count.completion_details.audio": ("output_audio_tokens", 1),
    "llm.cost.total": ("cost_usd_reported", 1),
    "embedding.model_name": ("embedding_model", 1),
    "tool.name": ("tool_name", 1),
    "session.id": ("session_id", 1),
}
#: OpenInference's flattened retrieval documents: only ids and scores are kept.
_OPENINFERENCE_DOCUMENT = re.compile(r"retrieval\.documents\.(\d+)\.document\.(id|score)")

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
        "gen_ai.content.prompt",  # OpenLIT
        "gen_ai.content.completion",
        "gen_ai.content.revised_prompt",
        "gen_ai.content.reasoning",
        "traceloop.entity.input",  # OpenLLMetry
        "traceloop.entity.output",
        "input.value",  # OpenInference
        "output.value",
        "llm.prompts",
        "llm.prompt_template.variables",
        "reranker.query",
        "user.id",
        "enduser.id",
        "spanline.tenant_id",
        "spanline.content",
    }
)
#: Indexed content of older instrumentations, e.g. ``gen_ai.prompt.0.content``.
_INDEXED_CONTENT = re.compile(r"gen_ai\.(?:prompt|completion)\.\d+\.")
_INDEXED_PREFIXES = ("gen_ai.prompt.", "gen_ai.completion.")
#: OpenInference's flattened messages, documents and embeddings (text and vectors).
_CONTENT_PREFIXES = (
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.prompts.",
    "llm.tools.",
    "embedding.embeddings.",
    "retrieval.documents.",
    "reranker.input_documents.",
    "reranker.output_documents.",
)

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
    ranked: dict[str, tuple[int, Any]] = {}
    direct: dict[str, Any] = {}
    extras: dict[str, str] = {}
    documents_by_index: dict[int, dict[str, Any]] = {}
    for key, value in span.attributes.items():
        mapping = _FIELD_BY_KEY.get(key)
        if mapping is not None:
            field, rank = mapping
            if value is not None and (field not in ranked or rank < ranked[field][0]):
                ranked[field] = (rank, value)
        elif key.startswith("spanline.") and key[9:] in _SPANLINE_FIELDS:
            direct[key[9:]] = value
        elif key in _NEVER_KEPT or key.startswith(_CONTENT_PREFIXES):
            if document := _OPENINFERENCE_DOCUMENT.fullmatch(key):
                documents_by_index.setdefault(int(document[1]), {})[document[2]] = value
        elif key.startswith(_INDEXED_PREFIXES) and _INDEXED_CONTENT.match(key):
            continue
        elif len(key) <= _MAX_KEY:
            extras[key] = _text(value)
    mapped = {field: value for field, (_, value) in ranked.items()}
    operation = mapped.pop("_operation", None)
    error_type = mapped.pop("_error_type", None)
    finish_reasons = mapped.pop("_finish_reasons", None)
    ttft_s = mapped.pop("_ttft_s", None)
    documents = mapped.pop("_documents", None)
    if documents is None and documents_by_index:
        documents = [documents_by_index[index] for index in sorted(documents_by_index)]
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
        **mapped,
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
    out["kind"] = _kind(span.attributes, out)
    if out["kind"] == "tool" and "tool_name" not in out:
        _put(out, "tool_name", span.attributes.get("traceloop.entity.name"))
    _catalog_provider(out, extras)
    _include_parts(out, extras, "input_tokens", ("cache_read_tokens", "cache_write_tokens"))
    _include_parts(out, extras, "output_tokens", ("reasoning_tokens",))
    out.update(direct)
    if out["kind"] == "embedding":
        if "embedding_model" not in out:
            _put(out, "embedding_model", out.get("model_requested") or out.get("model_response"))
        elif "model_requested" not in out and "model_response" not in out:
            out["model_requested"] = out["embedding_model"]  # OpenInference names no other model: price this one

    convention = _convention(span.attributes, resource_extras)
    for key, value, lossy in (
        ("gen_ai.operation.name", operation, True),
        ("error.type", error_type, True),
        (
            "gen_ai.response.finish_reasons",
            finish_reasons,
            isinstance(finish_reasons, list) and len(finish_reasons) > 1,
        ),
        ("otel.status_description", span.status_message or None, True),
        ("spanline.convention", convention, True),
    ):
        if lossy and value is not None:
            extras[key] = _text(value)
    out["attributes"] = _fit(extras, resource_extras)
    return out


def _kind(attributes: dict[str, Any], out: dict[str, object]) -> str:
    """The first convention that names a known kind decides; agent and workflow roots are requests."""
    for key, kinds in _KIND_TABLES:
        value = attributes.get(key)
        kind = kinds.get(value) if isinstance(value, str) else None
        if kind == _ROOT:
            return "agent_step" if out["parent_span_id"] else "request"
        if kind is not None:
            return kind
    return _fallback_kind(out)


def _convention(attributes: dict[str, Any], resource_extras: dict[str, str]) -> str | None:
    """The instrumentation family a span's attributes follow, None for a span with no GenAI ones."""
    if any(key.startswith(("openinference.", "llm.token_count.")) or key == "llm.model_name" for key in attributes):
        return "openinference"
    if any(key.startswith(("traceloop.", "llm.usage.")) or key == "llm.request.type" for key in attributes):
        return "openllmetry"
    if (
        resource_extras.get("resource.telemetry.sdk.name") == "openlit"
        or resource_extras.get("otel.scope.name", "").startswith("openlit")
        or "gen_ai.usage.cost" in attributes
    ):
        return "openlit"
    if any(key.startswith("gen_ai.") for key in attributes):
        return "otel-genai"
    return None


def _catalog_provider(out: dict[str, object], extras: dict[str, str]) -> None:
    """Store the price catalog's provider id; the spelling as sent stays an attribute."""
    sent = out.get("provider")
    if isinstance(sent, str) and (provider := catalog_provider(sent)) != sent:
        out["provider"] = provider
        extras["spanline.provider_as_sent"] = _text(sent)


def _include_parts(out: dict[str, object], extras: dict[str, str], whole: str, parts: tuple[str, ...]) -> None:
    """Raw counts (parts reported *beside* the whole, as Anthropic's API does for cache tokens and
    Gemini's for thinking tokens) -> the schema's inclusive counts.

    Counts are raw when the parts exceed the whole, which inclusive counts never do. Raw counts
    whose parts happen to fit inside the whole cannot be told apart and are taken as inclusive.
    The count as sent is kept as ``spanline.raw_<whole>``. Non-integers are left to validation.
    """
    values = [out.get(name, 0) for name in (whole, *parts)]
    counts = [value for value in values if isinstance(value, int) and not isinstance(value, bool)]
    if len(counts) == len(values) and sum(counts[1:]) > counts[0]:
        extras[f"spanline.raw_{whole}"] = str(counts[0])
        out[whole] = sum(counts)


def _fallback_kind(out: dict[str, object]) -> str:
    """Spans no convention typed: an LLM call if they name a model, a tool if they name one."""
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
