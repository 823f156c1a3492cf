"""The span fields a caller may set, so a typo fails where it is written, not on the server.

Identity, timing and tenant fields are not here: the SDK sets them. ``model`` is shorthand for
``model_requested`` and ``user_id`` is the raw id replaced by its tenant-salted hash (by the SDK
when it has the tenant's salt, else by the receiver).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict


class SpanFields(TypedDict, total=False):
    """Keyword arguments accepted by the span helpers and :meth:`SpanScope.set`."""

    name: str
    trace_id: str
    feature: str
    status: str
    error_type: str
    http_status: int
    retry_after_s: float
    attempt: int
    finish_reason: str
    provider: str
    model: str
    model_requested: str
    model_response: str
    endpoint: str
    region: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    context_window: int
    context_truncated: bool
    ttft_ms: float
    cache_hit: bool
    cache_layer: str
    cache_similarity: float
    route: str
    model_tier: str
    routing_reason: str
    fallback_from: str
    prompt_id: str
    prompt_version: str
    prompt_hash: str
    user_id: str
    session_id: str
    index_name: str
    top_k: int
    retrieval_doc_ids: list[str]
    retrieval_scores: list[float]
    embedding_model: str
    index_embedding_model: str
    index_documents: int
    index_chunks: int
    tool_name: str
    eval_name: str
    eval_score: float
    eval_passed: bool
    attributes: dict[str, str]
    cost_usd_reported: float
    content: str


SETTABLE: frozenset[str] = frozenset(SpanFields.__annotations__)

#: Fields a child span takes from its parent unless it sets them itself.
INHERITED: tuple[str, ...] = ("feature", "user_id", "session_id")


def check_names(fields: Mapping[str, Any]) -> None:
    """Raise TypeError for unknown field names, as a function with those keywords would."""
    if not SETTABLE.issuperset(fields):
        unknown = ", ".join(sorted(set(fields) - SETTABLE))
        raise TypeError(f"unknown span field(s): {unknown}; settable fields: {', '.join(sorted(SETTABLE))}")
