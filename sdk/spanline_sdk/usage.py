"""Token usage, returned model and finish reason from provider responses, in canonical form.

Works on SDK response objects (attribute access) and on their JSON dicts alike, without
importing the ``openai`` or ``anthropic`` packages. Canonical rule (OTel GenAI, see
the schema's docstring): ``input_tokens`` includes cache reads and writes,
``output_tokens`` includes reasoning. OpenAI's counts already follow it; Anthropic's
``input_tokens`` excludes both cache counts, so they are added back here.

Schema 1.1 details (README "Token classes"): Anthropic's ``cache_creation`` splits the cache writes
by TTL (``ephemeral_5m_input_tokens``, ``ephemeral_1h_input_tokens``); OpenAI's details give audio
and image tokens of the prompt and the completion, and the Realtime API's the cached ones among them.
OpenAI reports cache writes as one count (its retention split is not priced apart), so they fill
``cache_write_tokens`` alone. Details a response lacks are left out, i.e. 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_MISSING = object()


def _get(obj: Any, name: str) -> Any:
    """``obj[name]`` for mappings, ``obj.name`` otherwise; None when absent."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _has(obj: Any, name: str) -> bool:
    """Whether the field exists at all (Anthropic objects carry cache fields even when None)."""
    if isinstance(obj, Mapping):
        return name in obj
    return getattr(obj, name, _MISSING) is not _MISSING


def _count(value: Any) -> int:
    """A token count, 0 for None or anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _details(input_details: Any, output_details: Any) -> dict[str, int]:
    """OpenAI's token details, one shape for Chat Completions, Responses, Images and Realtime usage."""
    cached = _get(input_details, "cached_tokens_details")  # Realtime: the cached part by modality
    fields = {
        "cache_read_tokens": _count(_get(input_details, "cached_tokens")),
        "cache_write_tokens": _count(_get(input_details, "cache_write_tokens")),
        "reasoning_tokens": _count(_get(output_details, "reasoning_tokens")),
        "input_audio_tokens": _count(_get(input_details, "audio_tokens")),
        "cache_audio_read_tokens": _count(_get(cached, "audio_tokens")),
        "input_image_tokens": _count(_get(input_details, "image_tokens")),
        "cache_image_read_tokens": _count(_get(cached, "image_tokens")),
        "output_audio_tokens": _count(_get(output_details, "audio_tokens")),
        "output_image_tokens": _count(_get(output_details, "image_tokens")),
    }
    return {name: value for name, value in fields.items() if value or name in _ALWAYS}


#: Fields the SDK always reported, kept in its output when 0.
_ALWAYS = frozenset({"cache_read_tokens", "reasoning_tokens"})


def _openai_chat(usage: Any) -> dict[str, int]:
    return {
        "input_tokens": _count(_get(usage, "prompt_tokens")),
        "output_tokens": _count(_get(usage, "completion_tokens")),
        **_details(_get(usage, "prompt_tokens_details"), _get(usage, "completion_tokens_details")),
    }


def _openai_responses(usage: Any) -> dict[str, int]:
    """Responses API usage, and the Images and Realtime APIs' usage of the same shape."""
    input_details = _get(usage, "input_tokens_details") or _get(usage, "input_token_details")
    output_details = _get(usage, "output_tokens_details") or _get(usage, "output_token_details")
    return {
        "input_tokens": _count(_get(usage, "input_tokens")),
        "output_tokens": _count(_get(usage, "output_tokens")),
        **_details(input_details, output_details),
    }


def _anthropic(usage: Any) -> dict[str, int]:
    read = _count(_get(usage, "cache_read_input_tokens"))
    write = _count(_get(usage, "cache_creation_input_tokens"))
    fields = {
        "input_tokens": _count(_get(usage, "input_tokens")) + read + write,
        "output_tokens": _count(_get(usage, "output_tokens")),
        "cache_read_tokens": read,
        "cache_write_tokens": write,
    }
    by_ttl = _get(usage, "cache_creation")
    for field, key in (
        ("cache_write_5m_tokens", "ephemeral_5m_input_tokens"),
        ("cache_write_1h_tokens", "ephemeral_1h_input_tokens"),
    ):
        if count := _count(_get(by_ttl, key)):
            fields[field] = count
    return fields


def _is_anthropic(response: Any, usage: Any) -> bool:
    return (
        _has(usage, "cache_read_input_tokens")
        or _has(usage, "cache_creation_input_tokens")
        or _has(response, "stop_reason")
    )


def extract_usage(response: Any) -> dict[str, int]:
    """Canonical token fields of an OpenAI chat / Responses or Anthropic messages response."""
    usage = _get(response, "usage")
    if usage is None:
        return {}
    if _has(usage, "prompt_tokens"):
        return _openai_chat(usage)
    if _is_anthropic(response, usage):
        return _anthropic(usage)
    if _has(usage, "input_tokens"):
        return _openai_responses(usage)
    return {}


def extract_finish_reason(response: Any) -> str | None:
    """choices[0].finish_reason (chat), stop_reason (Anthropic) or the Responses API status."""
    choices = _get(response, "choices")
    if isinstance(choices, list | tuple) and choices:
        return _text(_get(choices[0], "finish_reason"))
    stop_reason = _text(_get(response, "stop_reason"))
    if stop_reason is not None:
        return stop_reason
    status = _text(_get(response, "status"))
    if status == "incomplete":
        return _text(_get(_get(response, "incomplete_details"), "reason")) or status
    return status


def extract_response_fields(response: Any) -> dict[str, Any]:
    """Everything :meth:`SpanScope.record_response` records: usage, model_response, finish_reason."""
    fields: dict[str, Any] = extract_usage(response)
    model = _text(_get(response, "model"))
    if model is not None:
        fields["model_response"] = model
    finish_reason = extract_finish_reason(response)
    if finish_reason is not None:
        fields["finish_reason"] = finish_reason
    return fields
