"""Spanline's Python SDK: spans around LLM calls, tools and retrievals, exported in the background.

import spanline
spanline.configure("127.0.0.1:19092", tenant_id="acme", service="support-bot")
with spanline.llm_call(provider="openai", model="gpt-4o", feature="support") as span:
    span.record_response(client.chat.completions.create(...))
"""

from spanline.collectors.sdk.api import (
    agent_step,
    cache_lookup,
    configure,
    default_tracer,
    embedding_call,
    eval_span,
    llm_call,
    request,
    rerank,
    retrieval,
    shutdown,
    tool_call,
)
from spanline.collectors.sdk.exporter import Transport
from spanline.collectors.sdk.fields import SpanFields
from spanline.collectors.sdk.scope import SpanScope, current_span
from spanline.collectors.sdk.tracer import Tracer
from spanline.collectors.sdk.usage import extract_response_fields, extract_usage
from spanline.contract.redact import redact

__all__ = [
    "SpanFields",
    "SpanScope",
    "Tracer",
    "Transport",
    "agent_step",
    "cache_lookup",
    "configure",
    "current_span",
    "default_tracer",
    "embedding_call",
    "eval_span",
    "extract_response_fields",
    "extract_usage",
    "llm_call",
    "redact",
    "request",
    "rerank",
    "retrieval",
    "shutdown",
    "tool_call",
]
