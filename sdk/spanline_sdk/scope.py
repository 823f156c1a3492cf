"""A live span: context manager, async context manager and decorator in one small object.

This is the caller's hot path, so it only records raw facts into a plain dict — random
integer ids, a wall-clock start in ns and a monotonic duration — and hands the dict to a
sink. Formatting ids and timestamps, hashing, redaction and validation happen on the SDK's
background thread (:mod:`spanline_sdk.finish`).

Nesting uses a :class:`~contextvars.ContextVar`, so parentage follows asyncio tasks (which
copy the context when created) and threads started through ``contextvars.copy_context()``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import random
from collections.abc import Callable
from contextvars import ContextVar
from time import perf_counter_ns, time_ns
from types import TracebackType
from typing import Any, Protocol, TypeVar, Unpack, cast

from spanline_sdk.failures import error_fields
from spanline_sdk.fields import INHERITED, SpanFields, check_names
from spanline_sdk.finish import format_span_id, format_trace_id
from spanline_sdk.schema import MAX_ATTRIBUTE_CHARS
from spanline_sdk.usage import extract_response_fields

log = logging.getLogger("spanline.sdk")

F = TypeVar("F", bound=Callable[..., Any])

# A private generator: a caller's random.seed() must not make ids repeat. Reseeded after
# fork so parent and child never draw the same ids.
_rng = random.Random()
os.register_at_fork(after_in_child=_rng.seed)
_randbits = _rng.getrandbits


class SpanSink(Protocol):
    """Where ended spans go: a tracer's queue, or nowhere before ``configure``."""

    def emit(self, span: dict[str, Any]) -> None: ...


class _NoSink:
    """Spans ended before ``configure()`` (or after ``shutdown()``) are discarded."""

    def emit(self, span: dict[str, Any]) -> None:
        return None


DISCARD: SpanSink = _NoSink()


class _DefaultSink:
    """The module-level tracer the helper functions report to; swapped by configure()."""

    sink: SpanSink = DISCARD


DEFAULT = _DefaultSink()
_current: ContextVar[SpanScope | None] = ContextVar("spanline_current_span", default=None)


def current_span() -> SpanScope | None:
    """The innermost open span in this context, if any."""
    return _current.get()


class SpanScope:
    """One span. Use as ``with``/``async with`` (yields itself) or as a decorator.

    As a decorator it is a template: every call of the decorated function opens a fresh
    span with a copy of these fields. Entered directly, it is single-use.
    """

    __slots__ = ("_kind", "_parent", "_sid", "_sink", "_t0", "_tid", "_token", "fields")

    def __init__(self, sink: SpanSink | None, kind: str, fields: dict[str, Any]) -> None:
        self.fields = fields
        self._kind = kind
        self._sink = sink

    # --- the hot path
    def __enter__(self) -> SpanScope:
        fields = self.fields
        parent = self._parent = _current.get()
        self._sid = sid = _randbits(64)
        if parent is None:
            self._tid = fields.pop("trace_id", None) or _randbits(128)
        else:
            self._tid = fields.pop("trace_id", None) or parent._tid
            fields["parent_span_id"] = parent._sid
            inherited = parent.fields
            for key in INHERITED:
                if key in inherited and key not in fields:
                    fields[key] = inherited[key]
        fields["span_id"] = sid
        fields["trace_id"] = self._tid
        fields["kind"] = self._kind
        self._token = _current.set(self)
        fields["start_ns"] = time_ns()
        self._t0 = perf_counter_ns()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        elapsed = perf_counter_ns() - self._t0
        try:
            _current.reset(self._token)
        except ValueError:  # ended in another context than it started in (e.g. another task)
            _current.set(self._parent)
        fields = self.fields
        fields["duration_ms"] = elapsed / 1e6
        if exc is not None:
            self._record_error(exc)
        (self._sink or DEFAULT.sink).emit(fields)

    async def __aenter__(self) -> SpanScope:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # --- what the caller records while the span is open
    @property
    def span_id(self) -> str:
        return format_span_id(self._sid)

    @property
    def trace_id(self) -> str:
        return format_trace_id(self._tid)

    def set(self, **fields: Unpack[SpanFields]) -> None:
        """Set span fields; unknown names raise TypeError, bad values are refused by the server."""
        check_names(fields)
        self.fields.update(fields)

    def set_attribute(self, key: str, value: object) -> None:
        """Add one string attribute (values are converted with str() and cut to 4096 chars)."""
        attributes = dict(self.fields.get("attributes") or {})
        attributes[str(key)] = str(value)[:MAX_ATTRIBUTE_CHARS]
        self.fields["attributes"] = attributes

    def mark_first_token(self) -> None:
        """Record time to first token (streaming); later calls keep the first value."""
        if "ttft_ms" not in self.fields:
            self.fields["ttft_ms"] = (perf_counter_ns() - self._t0) / 1e6

    def record_response(self, response: object) -> None:
        """Record usage, model_response and finish_reason from an OpenAI or Anthropic response."""
        try:
            self.fields.update(extract_response_fields(response))
        except Exception:  # a strange response object must not break the caller's request
            log.debug("could not read usage from %r", type(response), exc_info=True)

    def _record_error(self, exc: BaseException) -> None:
        fields = self.fields
        try:
            found = error_fields(exc, self._kind)
        except Exception:  # classification must never replace the caller's exception
            log.debug("could not classify %r", type(exc), exc_info=True)
            found = {"status": "error", "error_type": "other"}
        for key, value in found.items():
            fields.setdefault(key, value)
        fields["status"] = "error"
        attributes = dict(fields.get("attributes") or {})
        attributes["exception.type"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
        fields["attributes"] = attributes

    # --- decorator form
    def __call__(self, func: F) -> F:
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"{func.__qualname__} is a generator: a decorator span would end when the generator "
                "is created; open the span with `with` inside the generator instead"
            )
        sink, kind, template = self._sink, self._kind, self.fields
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with SpanScope(sink, kind, dict(template)):
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)  # functools.wraps keeps func's signature

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with SpanScope(sink, kind, dict(template)):
                return func(*args, **kwargs)

        return cast(F, wrapper)  # functools.wraps keeps func's signature


def new_scope(sink: SpanSink | None, kind: str, fields: SpanFields) -> SpanScope:
    """A span of ``kind`` with caller-given fields (names checked now, values by the server).

    ``fields`` must be a fresh dict (a ``**kwargs``): the span fills it in place.
    """
    check_names(fields)
    return SpanScope(sink, kind, cast("dict[str, Any]", fields))  # a TypedDict is a dict at runtime
