"""Turning the raw dicts callers produced into canonical, validated spans (background thread).

Callers record integer ids, a start in epoch nanoseconds and shorthand fields (``model``,
``user_id``); this is where they become schema fields: hex ids, RFC 3339 times (converted
for the whole batch at once with numpy), the salted user-id hash, redacted content or none,
and one validation pass over the batch with the canonical :class:`Span` model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from spanline.collectors.sdk.scope import format_span_id, format_trace_id
from spanline.contract.hashing import hash_user_id
from spanline.contract.redact import redact
from spanline.contract.schema import SpanKind
from spanline.contract.validation import InvalidItem, validate_items

#: Longest content the schema accepts.
MAX_CONTENT_CHARS = 65_536
#: User-id hashes remembered per batch worker; ids repeat, HMAC costs ~1.5 µs each.
HASH_CACHE_SIZE = 10_000

_DEFAULT_NAMES = {
    SpanKind.LLM.value: "chat",
    SpanKind.EMBEDDING.value: "embeddings",
    SpanKind.RETRIEVAL.value: "retrieval",
    SpanKind.RERANK.value: "rerank",
    SpanKind.TOOL.value: "tool",
    SpanKind.CACHE.value: "cache_lookup",
    SpanKind.AGENT_STEP.value: "agent_step",
    SpanKind.EVAL.value: "eval",
    SpanKind.REQUEST.value: "request",
}


def _utc_strings(epoch_ns: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(epoch_ns.astype("datetime64[ns]"), unit="us", timezone="UTC")


class SpanFinisher:
    """Completes and validates batches of caller dicts for one tracer's tenant and service."""

    def __init__(self, base: Mapping[str, Any], user_salt: bytes, capture_content: bool) -> None:
        self._base = dict(base)
        self._salt = user_salt
        self._capture_content = capture_content
        self._hashes: dict[str, str] = {}

    def __call__(self, raw: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[InvalidItem]]:
        """(valid spans ready to publish, invalid ones with reasons)."""
        starts = np.fromiter((span.pop("start_ns") for span in raw), dtype=np.int64, count=len(raw))
        durations_ns = np.fromiter((span["duration_ms"] for span in raw), dtype=np.float64, count=len(raw))
        start_times = _utc_strings(starts)
        end_times = _utc_strings(starts + np.rint(durations_ns * 1e6).astype(np.int64))
        spans = [
            self._complete(span, start, end)
            for span, start, end in zip(raw, start_times.tolist(), end_times.tolist(), strict=False)
        ]
        result = validate_items(spans)
        return [spans[i] for i in result.indexes], result.invalid

    def _complete(self, raw: dict[str, Any], start_time: str, end_time: str) -> dict[str, Any]:
        span = {**self._base, **raw, "start_time": start_time, "end_time": end_time}
        span["span_id"] = format_span_id(span["span_id"])
        span["trace_id"] = format_trace_id(span["trace_id"])
        parent = span.get("parent_span_id")
        if parent is not None:
            span["parent_span_id"] = format_span_id(parent)
        model = span.pop("model", None)
        if model is not None:
            span.setdefault("model_requested", model)
            if span["kind"] == SpanKind.EMBEDDING:
                span.setdefault("embedding_model", model)
        if not span.get("name"):
            span["name"] = span.get("tool_name") or span.get("eval_name") or _DEFAULT_NAMES.get(span["kind"], "")
        user_id = span.pop("user_id", None)
        if user_id is not None:
            span["user_id_hash"] = self._hash(str(user_id))
        content = span.pop("content", None)
        if self._capture_content and isinstance(content, str):
            span["content"] = redact(content)[:MAX_CONTENT_CHARS]
        return span

    def _hash(self, user_id: str) -> str:
        hashed = self._hashes.get(user_id)
        if hashed is None:
            if len(self._hashes) >= HASH_CACHE_SIZE:
                self._hashes.clear()
            hashed = self._hashes[user_id] = hash_user_id(self._salt, user_id)
        return hashed
