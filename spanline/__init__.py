"""Spanline: streaming observability and cost analytics for production LLM systems.

The SDK is the package's public surface: ``spanline.configure(...)``, then
``with spanline.llm_call(...) as span:`` (see ``spanline.collectors.sdk``).
"""

from spanline.collectors.sdk import (
    agent_step,
    cache_lookup,
    configure,
    current_span,
    embedding_call,
    eval_span,
    llm_call,
    request,
    rerank,
    retrieval,
    shutdown,
    tool_call,
)

__all__ = [
    "agent_step",
    "cache_lookup",
    "configure",
    "current_span",
    "embedding_call",
    "eval_span",
    "llm_call",
    "request",
    "rerank",
    "retrieval",
    "shutdown",
    "tool_call",
]
