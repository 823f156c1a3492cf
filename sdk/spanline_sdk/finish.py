"""Turning the raw dicts callers produced into canonical spans (background thread).

Callers record integer ids, a start in epoch nanoseconds and shorthand fields (``model``,
``user_id``); this is where they become schema fields: hex ids, an RFC 3339 start time, the
tenant-salted user-id hash (or, without a salt, the raw id for the receiver to hash), and
redacted content or none. Validation is the server's: the receiver answers which spans it
refused and why, and the worker dead-letters what reached Kafka directly.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from spanline_sdk.hashing import hash_user_id
from spanline_sdk.redact import redact
from spanline_sdk.schema import MAX_CONTENT_CHARS, SpanKind

#: User-id hashes remembered per tracer; ids repeat, HMAC costs ~1.5 µs each.
HASH_CACHE_SIZE = 10_000
#: Formatted whole seconds remembered: a batch's spans mostly share a few seconds.
SECOND_CACHE_SIZE = 4_096

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


def format_span_id(value: int | str) -> str:
    return value if isinstance(value, str) else f"{value:016x}"


def format_trace_id(value: int | str) -> str:
    return value if isinstance(value, str) else f"{value:032x}"


class SpanFinisher:
    """Completes batches of caller dicts for one tracer's service (and tenant, when it knows it)."""

    def __init__(self, base: Mapping[str, Any], user_salt: bytes | None, capture_content: bool) -> None:
        self._base = dict(base)
        self._salt = user_salt
        self._capture_content = capture_content
        self._hashes: dict[str, str] = {}
        self._seconds: dict[int, str] = {}

    def __call__(self, raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self._complete(span) for span in raw]

    def _complete(self, raw: dict[str, Any]) -> dict[str, Any]:
        span = {**self._base, **raw}
        span["start_time"] = self._rfc3339(span.pop("start_ns"))
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
        if self._salt is not None:
            user_id = span.pop("user_id", None)
            if user_id is not None:
                span["user_id_hash"] = self._hash(str(user_id))
        content = span.pop("content", None)
        if self._capture_content and isinstance(content, str):
            span["content"] = redact(content)[:MAX_CONTENT_CHARS]
        return span

    def _rfc3339(self, epoch_ns: int) -> str:
        """UTC with microseconds, e.g. 2026-11-20T12:00:00.123456Z."""
        seconds, nanos = divmod(epoch_ns, 1_000_000_000)
        prefix = self._seconds.get(seconds)
        if prefix is None:
            if len(self._seconds) >= SECOND_CACHE_SIZE:
                self._seconds.clear()
            prefix = self._seconds[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        return f"{prefix}.{nanos // 1000:06d}Z"

    def _hash(self, user_id: str) -> str:
        assert self._salt is not None
        hashed = self._hashes.get(user_id)
        if hashed is None:
            if len(self._hashes) >= HASH_CACHE_SIZE:
                self._hashes.clear()
            hashed = self._hashes[user_id] = hash_user_id(self._salt, user_id)
        return hashed
