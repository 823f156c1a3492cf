"""Spanline's Python SDK: spans around LLM calls, tools and retrievals, exported in the background.

import spanline_sdk as spanline
spanline.configure("support-bot", endpoint="https://spanline.internal:4318", api_key="sl-acme-…")
with spanline.llm_call(provider="openai", model="gpt-4o", feature="support") as span:
    span.record_response(client.chat.completions.create(...))

Standard library only; ``spanline-sdk[kafka]`` adds writing straight to Kafka.
"""

from spanline_sdk.api import (
    agent_step,
    cache_lookup,
    configure,
    default_tracer,
    embedding_call,
    escalation,
    eval_span,
    feedback,
    index_build,
    llm_call,
    request,
    rerank,
    retrieval,
    shutdown,
    tool_call,
)
from spanline_sdk.config import ConfigError
from spanline_sdk.encode import Rejected
from spanline_sdk.exporter import Transport, Undeliverable
from spanline_sdk.fields import SpanFields
from spanline_sdk.redact import redact
from spanline_sdk.scope import SpanScope, current_span
from spanline_sdk.tracer import Tracer
from spanline_sdk.transport_http import HttpTransport
from spanline_sdk.usage import extract_response_fields, extract_usage

__all__ = [
    "ConfigError",
    "HttpTransport",
    "Rejected",
    "SpanFields",
    "SpanScope",
    "Tracer",
    "Transport",
    "Undeliverable",
    "agent_step",
    "cache_lookup",
    "configure",
    "current_span",
    "default_tracer",
    "embedding_call",
    "escalation",
    "eval_span",
    "extract_response_fields",
    "extract_usage",
    "feedback",
    "index_build",
    "llm_call",
    "redact",
    "request",
    "rerank",
    "retrieval",
    "shutdown",
    "tool_call",
]
