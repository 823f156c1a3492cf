"""What kind of failure an exception is, for spans that end by raising.

Provider SDKs disagree on exception types, so the mapping reads what they have in common:
the class name, an HTTP status on the exception or its ``response``, an error ``code`` and
the message. Classification runs only on the error path, never on the hot path.
"""

from __future__ import annotations

import asyncio
from typing import Any

from spanline_sdk.schema import ErrorType, SpanKind

_CONTEXT_LENGTH_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "prompt is too long",
    "too many tokens",
    "maximum number of tokens",
)
_CONTENT_FILTER_MARKERS = ("content_filter", "content filter", "content management policy", "content policy")
_TIMEOUT_NAMES = ("timeout", "timedout", "deadlineexceeded")
_SERVER_NAMES = ("internalservererror", "serviceunavailable", "overloaded", "badgateway")


def http_status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (OpenAI/Anthropic, httpx, requests, aiohttp, google)."""
    response = getattr(exc, "response", None)
    for value in (
        getattr(exc, "status_code", None),
        getattr(exc, "http_status", None),
        getattr(exc, "status", None),
        getattr(response, "status_code", None),
        getattr(exc, "code", None),
    ):
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds from the response's ``retry-after-ms`` or ``retry-after`` header, if numeric."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None or not hasattr(headers, "get"):
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name) or headers.get(name.title())
        try:
            seconds = float(raw) / scale
        except (TypeError, ValueError):
            continue
        if seconds >= 0:
            return seconds
    return None


def _text_of(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return f"{code if isinstance(code, str) else ''} {exc}".lower()


def classify_error(exc: BaseException, kind: str, status: int | None) -> ErrorType:
    """The span's ``error_type``: rate limits, then causes named in the message, then status classes.

    A tool span whose exception fits no class is a ``tool_error``, since that is what the
    tool error rate counts; other kinds fall back to ``other``.
    """
    if isinstance(exc, asyncio.CancelledError):
        return ErrorType.CANCELLED
    name = type(exc).__name__.lower()
    text = _text_of(exc)
    if status == 429 or "ratelimit" in name:
        return ErrorType.RATE_LIMITED
    if any(marker in text for marker in _CONTEXT_LENGTH_MARKERS):
        return ErrorType.CONTEXT_LENGTH_EXCEEDED
    if any(marker in text for marker in _CONTENT_FILTER_MARKERS) or "contentfilter" in name:
        return ErrorType.CONTENT_FILTER
    if isinstance(exc, TimeoutError) or status in (408, 504) or any(part in name for part in _TIMEOUT_NAMES):
        return ErrorType.TIMEOUT
    if (status is not None and status >= 500) or any(part in name for part in _SERVER_NAMES):
        return ErrorType.SERVER_ERROR
    return ErrorType.TOOL_ERROR if kind == SpanKind.TOOL else ErrorType.OTHER


def error_fields(exc: BaseException, kind: str) -> dict[str, Any]:
    """Span fields describing a failure: status, error_type, http_status, retry_after_s."""
    status = http_status_of(exc)
    fields: dict[str, Any] = {"status": "error", "error_type": classify_error(exc, kind, status).value}
    if status is not None:
        fields["http_status"] = status
    retry_after = retry_after_of(exc)
    if retry_after is not None:
        fields["retry_after_s"] = retry_after
    return fields
