"""The module-level API: ``configure`` a default tracer, then open spans with one helper per kind.

Helpers resolve the default tracer when a span *ends*, so functions decorated at import
time report to whatever ``configure`` set up later; before that, spans are discarded.
"""

from __future__ import annotations

from typing import Unpack

from spanline.collectors.sdk.exporter import Transport
from spanline.collectors.sdk.fields import SpanFields
from spanline.collectors.sdk.scope import DEFAULT, DISCARD, SpanScope, new_scope
from spanline.collectors.sdk.tracer import Tracer, kafka_transport
from spanline.contract.schema import SpanKind


def configure(
    bootstrap_servers: str,
    tenant_id: str,
    service: str,
    *,
    environment: str = "production",
    feature: str = "",
    topic: str = "spans",
    user_id_salt: bytes | str | None = None,
    queue_size: int = 100_000,
    batch_size: int = 500,
    flush_interval_s: float = 0.2,
    capture_content: bool = False,
    transport: Transport | None = None,
) -> Tracer:
    """Create the default tracer (shutting down a previous one) and return it.

    ``transport`` replaces Kafka with any object having ``send(spans, source) -> futures``;
    it is not closed by the SDK. ``user_id_salt`` is the master secret user ids are hashed
    with (per tenant); see :func:`~spanline.collectors.sdk.tracer.master_secret` for the default.
    """
    if transport is None:
        open_transport, close_transport = kafka_transport(bootstrap_servers, topic)
    else:
        given = transport
        open_transport, close_transport = (lambda: given), None
    tracer = Tracer(
        tenant_id=tenant_id,
        service=service,
        open_transport=open_transport,
        close_transport=close_transport,
        environment=environment,
        feature=feature,
        user_id_salt=user_id_salt,
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
