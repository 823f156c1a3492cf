"""Dead-letter records: what was rejected, why, and where it came from.

One record per rejected item (or per undecodable Kafka message), so an operator can replay
or inspect each one. ``dedup_key`` names the item's origin: a redelivered Kafka message
yields the same keys, so DLQ readers can drop repeats.

A letter always fits in one Kafka record and is always valid JSON, whatever the payload
(binary, not UTF-8, nested too deeply, odd keys): key and value together stay within
``max_bytes`` (:data:`MAX_LETTER_BYTES` by default, well under Kafka's default 1 MB message
and request size). The reason, the errors and the origin fields are each cut to a share of
the limit; a payload too big for the rest is replaced by a prefix of its text (a string),
marked ``payload_truncated: true``, with ``payload_bytes`` (the original's size) and
``payload_sha256`` (the original's digest). The original of a bytes payload is those bytes
(the Kafka message value; its text is them decoded, undecodable bytes as ``\\xNN`` escapes);
of any other payload (an item), its JSON encoding by orjson, which is also its text; when
orjson refuses it (too deep, lone surrogates, odd keys), a copy with those parts spelled out.

Finding the original of a truncated letter: the worker keys letters
``<topic>/<partition>/<offset>`` (a whole message) or ``<topic>/<partition>/<offset>#<item>``
(one item of its JSON array), so the message can be read back from that offset while the
topic's retention lasts, and checked against ``payload_sha256``. The receiver keys them
``http/<request id>#<item>``: those items were refused before reaching Kafka, and the client
was told why in its 207 answer.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from spanline.contract.validation import InvalidItem

#: Largest letter (key + value), in bytes: a quarter of Kafka's default message size.
MAX_LETTER_BYTES = 256 * 1024
#: Smallest ``max_bytes`` accepted: room for every field's share and a payload prefix.
MIN_LETTER_BYTES = 4 * 1024
#: Levels of a payload kept when orjson cannot encode it (orjson itself stops at 254).
MAX_PAYLOAD_DEPTH = 64


def dead_letter(
    *,
    reason: str,
    source: str,
    dedup_key: str,
    payload: Any,
    tenant_id: str = "",
    errors: list[dict[str, str]] | None = None,
    max_bytes: int = MAX_LETTER_BYTES,
) -> tuple[bytes, bytes]:
    """A (key, value) Kafka record for ``spans.dlq``, ``max_bytes`` long at most; never raises
    for any payload or any text in the other fields."""
    if max_bytes < MIN_LETTER_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_LETTER_BYTES}, got {max_bytes}")
    key = _clip(dedup_key, max_bytes // 64)
    record: dict[str, Any] = {
        "reason": _clip(reason, max_bytes // 16),
        "errors": [],
        "source": _clip(source, max_bytes // 64),
        "tenant_id": _clip(tenant_id, max_bytes // 64),
        "dedup_key": key,
        "rejected_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    _add_errors(record, errors or [], field_bytes=max_bytes // 64, total_bytes=max_bytes // 4)
    room = max_bytes - len(key.encode())
    original, text, encoded = _payload(payload)
    value = orjson.dumps({**record, "payload": orjson.Fragment(encoded)})
    if len(value) <= room:
        return key.encode(), value
    record.update(
        payload="",
        payload_truncated=True,
        payload_bytes=len(original),
        payload_sha256=hashlib.sha256(original).hexdigest(),
    )
    record["payload"] = _prefix(text, room - len(orjson.dumps(record)) + 2)  # + the empty string's quotes
    return key.encode(), orjson.dumps(record)


def invalid_item_letters(
    invalid: list[InvalidItem], *, source: str, origin: str, tenant_id: str = ""
) -> list[tuple[bytes, bytes]]:
    """Dead letters for items that failed schema validation."""
    return [
        dead_letter(
            reason=item.reason,
            source=source,
            dedup_key=f"{origin}#{item.index}",
            payload=item.item,
            tenant_id=tenant_id,
            errors=[e.as_dict() for e in item.errors],
        )
        for item in invalid
    ]


def _payload(payload: Any) -> tuple[bytes, str, bytes]:
    """(original bytes, the payload as text, the payload as the JSON the letter embeds)."""
    if isinstance(payload, bytes | bytearray):
        original = bytes(payload)
        text = original.decode("utf-8", "backslashreplace")
        return original, text, orjson.dumps(text)
    try:
        encoded = orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS)
    except Exception:
        try:
            encoded = orjson.dumps(_plain(payload, 0))
        except Exception:
            encoded = orjson.dumps(f"<{type(payload).__name__} that cannot be read>")
    return encoded, encoded.decode(), encoded


def _plain(value: Any, depth: int) -> Any:
    """A JSON-encodable copy: str keys, valid Unicode, 64-bit ints, at most MAX_PAYLOAD_DEPTH levels."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, str):
        return _unicode(value)
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else _describe(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    if depth >= MAX_PAYLOAD_DEPTH:
        return f"<{type(value).__name__} nested deeper than {MAX_PAYLOAD_DEPTH} levels>"
    if isinstance(value, dict):
        return {_unicode(k) if isinstance(k, str) else _describe(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item, depth + 1) for item in value]
    return _describe(value)


def _describe(value: object) -> str:
    try:
        return _unicode(str(value))
    except Exception:
        return f"<{type(value).__name__} that cannot be printed>"


def _unicode(text: str) -> str:
    """``text`` with lone surrogates (which UTF-8 cannot encode) written as escapes."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def _clip(value: object, limit: int) -> str:
    """``value`` as a string whose JSON encoding takes at most ``limit`` bytes, marked when cut."""
    text = _unicode(value) if isinstance(value, str) else _describe(value)
    if 6 * len(text) + 2 <= limit or len(orjson.dumps(text)) <= limit:  # JSON takes ≤ 6 bytes a character
        return text
    marker = f" … [cut, {len(text)} characters in all]"
    return _prefix(text, limit - len(orjson.dumps(marker)) + 2) + marker  # one pair of quotes for both


def _prefix(text: str, budget: int) -> str:
    """The longest prefix of ``text`` whose JSON encoding, quotes included, fits ``budget`` bytes
    (the encoding grows with every character, so a binary search finds it)."""
    low, high = 0, min(len(text), max(budget, 0))
    while low < high:
        middle = (low + high + 1) // 2
        if len(orjson.dumps(text[:middle])) <= budget:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def _add_errors(record: dict[str, Any], errors: list[dict[str, str]], *, field_bytes: int, total_bytes: int) -> None:
    """The first errors that fit ``total_bytes``, each value cut to ``field_bytes``; the number
    left out goes to ``errors_omitted``."""
    kept: list[dict[str, str]] = []
    used = 2
    for error in errors:
        entry = {_clip(name, field_bytes): _clip(value, field_bytes) for name, value in error.items()}
        size = len(orjson.dumps(entry)) + 1
        if used + size > total_bytes:
            break
        kept.append(entry)
        used += size
    record["errors"] = kept
    if len(kept) < len(errors):
        record["errors_omitted"] = len(errors) - len(kept)
