"""Spanline: streaming observability and cost analytics for production LLM systems.

The SDK is its own distribution, ``spanline-sdk`` (``sdk/``, package ``spanline_sdk``); its
functions are re-exported here, so ``spanline.configure(...)`` then ``with spanline.llm_call(...)``
works where the server is installed too.
"""

from spanline_sdk import (
    agent_step,
    cache_lookup,
    configure,
    current_span,
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

__all__ = [
    "agent_step",
    "cache_lookup",
    "configure",
    "current_span",
    "embedding_call",
    "escalation",
    "eval_span",
    "feedback",
    "index_build",
    "llm_call",
    "request",
    "rerank",
    "retrieval",
    "shutdown",
    "tool_call",
]
