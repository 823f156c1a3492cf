"""The module-level API: ``configure`` a default tracer, then open spans with one helper per kind.

Helpers resolve the default tracer when a span *ends*, so functions decorated at import
time report to whatever ``configure`` set up later; before that, spans are discarded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Unpack

from spanline_sdk.config import (
    API_KEY_ENV,
    DEFAULT_ENDPOINT,
    ENDPOINT_ENV,
    TENANT_SALT_ENV,
    ConfigError,
    from_env,
    salt_bytes,
)
from spanline_sdk.exporter import Transport
from spanline_sdk.fields import SpanFields
from spanline_sdk.schema import SpanKind
from spanline_sdk.scope import DEFAULT, DISCARD, SpanScope, new_scope
from spanline_sdk.tracer import Tracer
from spanline_sdk.transport_http import HttpTransport, spans_url


def configure(
    service: str,
    *,
    endpoint: str | None = None,
    api_key: str | None = None,
    kafka_bootstrap_servers: str | None = None,
    kafka_topic: str = "spans",
    tenant_id: str | None = None,
    tenant_salt: bytes | str | None = None,
    environment: str = "production",
    feature: str = "",
    queue_size: int = 100_000,
    batch_size: int = 500,
    flush_interval_s: float = 0.2,
    capture_content: bool = False,
    transport: Transport | None = None,
) -> Tracer:
    """Create the default tracer (shutting down a previous one) and return it.

    By default spans go over HTTP to the receiver at ``endpoint`` (else SPANLINE_SDK_ENDPOINT,
    else http://127.0.0.1:4318) with the tenant's ``api_key`` (else SPANLINE_SDK_API_KEY),
    which decides the tenant. ``kafka_bootstrap_servers`` writes to Kafka instead (extra
    ``spanline-sdk[kafka]``), for producers inside the cluster: it needs ``tenant_id`` and the
    tenant's ``tenant_salt`` (else SPANLINE_SDK_TENANT_SALT; hex, as ``spanline tenant-salt
    TENANT`` prints it), never the master secret. ``transport`` replaces both with any object
    having ``send(spans, timeout_s) -> rejected`` (not closed by the SDK). Raises
    :class:`ConfigError` when the configuration cannot work; never afterwards.
    """
    salt = tenant_salt if isinstance(tenant_salt, bytes) else salt_bytes(from_env(tenant_salt, TENANT_SALT_ENV))
    close_transport: Callable[[Transport, float], None] | None = _close
    if transport is not None:
        open_transport, close_transport = _given(transport), None
    elif kafka_bootstrap_servers is not None:
        open_transport = _kafka(kafka_bootstrap_servers, kafka_topic, tenant_id, salt)
    else:
        open_transport = _http(endpoint, api_key)
    tracer = Tracer(
        service=service,
        open_transport=open_transport,
        close_transport=close_transport,
        tenant_id=tenant_id,
        tenant_salt=salt,
        environment=environment,
        feature=feature,
        queue_size=queue_size,
        batch_size=batch_size,
        flush_interval_s=flush_interval_s,
        capture_content=capture_content,
    )
    previous = DEFAULT.sink
    DEFAULT.sink = tracer
    if isinstance(previous, Tracer):
        previous.shutdown()
    return tracer


def _given(transport: Transport) -> Callable[[], Transport]:
    return lambda: transport


def _http(endpoint: str | None, api_key: str | None) -> Callable[[], Transport]:
    """The receiver transport's factory, after checking its URL and that there is a key."""
    key = from_env(api_key, API_KEY_ENV)
    if key is None:
        raise ConfigError(
            f"no API key: pass api_key= or set {API_KEY_ENV} to the tenant's key "
            "(`spanline up` writes demo keys to ~/.spanline/api_keys.json)"
        )
    url = from_env(endpoint, ENDPOINT_ENV) or DEFAULT_ENDPOINT
    spans_url(url)  # a bad URL fails here, not on the exporter's thread
    return lambda: HttpTransport(url, key)


def _kafka(bootstrap_servers: str, topic: str, tenant_id: str | None, salt: bytes | None) -> Callable[[], Transport]:
    """The Kafka transport's factory, after checking what writing past the receiver needs."""
    if not tenant_id:
        raise ConfigError("writing to Kafka needs tenant_id= (the receiver is not there to take it from the API key)")
    if salt is None:
        raise ConfigError(
            f"writing to Kafka needs the tenant's user-id salt: pass tenant_salt= or set {TENANT_SALT_ENV} "
            f"to what `spanline tenant-salt {tenant_id}` prints"
        )
    try:
        from spanline_sdk.transport_kafka import KafkaTransport
    except ImportError as exc:
        raise ConfigError(f"writing to Kafka needs kafka-python: pip install 'spanline-sdk[kafka]' ({exc})") from None
    return lambda: KafkaTransport(bootstrap_servers, topic)


def _close(transport: Transport, timeout_s: float) -> None:
    close = getattr(transport, "close", None)
    if close is not None:
        close(timeout_s)


def shutdown(timeout_s: float = 5.0) -> None:
    """Flush the default tracer for up to ``timeout_s`` and stop it; later spans are discarded."""
    previous = DEFAULT.sink
    DEFAULT.sink = DISCARD
    if isinstance(previous, Tracer):
        previous.shutdown(timeout_s)


def default_tracer() -> Tracer | None:
    """The tracer the helpers report to, or None before ``configure``."""
    sink = DEFAULT.sink
    return sink if isinstance(sink, Tracer) else None


def llm_call(**fields: Unpack[SpanFields]) -> SpanScope:
    """An LLM call (kind ``llm``); ``model`` is the requested model, record the response on the span."""
    return new_scope(None, SpanKind.LLM.value, fields)


def embedding_call(**fields: Unpack[SpanFields]) -> SpanScope:
    """An embedding call (kind ``embedding``); ``model`` also sets ``embedding_model``."""
    return new_scope(None, SpanKind.EMBEDDING.value, fields)


def retrieval(**fields: Unpack[SpanFields]) -> SpanScope:
    """A vector/keyword retrieval (kind ``retrieval``): index_name, top_k, doc ids and scores."""
    return new_scope(None, SpanKind.RETRIEVAL.value, fields)


def rerank(**fields: Unpack[SpanFields]) -> SpanScope:
    """A rerank step (kind ``rerank``)."""
    return new_scope(None, SpanKind.RERANK.value, fields)


def index_build(**fields: Unpack[SpanFields]) -> SpanScope:
    """A build or refresh of a retrieval index (kind ``index_build``): index_name, and the index's
    size after it as index_documents and index_chunks (what the index_shrink alerts compare)."""
    return new_scope(None, SpanKind.INDEX_BUILD.value, fields)


def escalation(**fields: Unpack[SpanFields]) -> SpanScope:
    """A hand-off of the current request to a human (kind ``escalation``; ``name`` = the reason):
    the request counts as not contained."""
    return new_scope(None, SpanKind.ESCALATION.value, fields)


def feedback(**fields: Unpack[SpanFields]) -> SpanScope:
    """End-user feedback on an answer (kind ``feedback``): eval_name (e.g. "thumbs"), eval_score,
    eval_passed = positive. Inside the request it joins its trace; later, pass the answer's
    ``trace_id`` (the request scope's ``trace_id``) to tie it to that trace."""
    return new_scope(None, SpanKind.FEEDBACK.value, fields)


def tool_call(**fields: Unpack[SpanFields]) -> SpanScope:
    """A tool call (kind ``tool``); the name defaults to ``tool_name``, unclassified errors are tool_error."""
    return new_scope(None, SpanKind.TOOL.value, fields)


def cache_lookup(**fields: Unpack[SpanFields]) -> SpanScope:
    """A cache lookup (kind ``cache``): cache_hit, cache_layer, cache_similarity."""
    return new_scope(None, SpanKind.CACHE.value, fields)


def agent_step(**fields: Unpack[SpanFields]) -> SpanScope:
    """One step of an agent loop (kind ``agent_step``)."""
    return new_scope(None, SpanKind.AGENT_STEP.value, fields)


def eval_span(**fields: Unpack[SpanFields]) -> SpanScope:
    """An evaluation (kind ``eval``): eval_name, eval_score, eval_passed; the name defaults to eval_name."""
    return new_scope(None, SpanKind.EVAL.value, fields)


def request(**fields: Unpack[SpanFields]) -> SpanScope:
    """The root of a request (kind ``request``); pass ``trace_id`` to reuse an incoming correlation id."""
    return new_scope(None, SpanKind.REQUEST.value, fields)
