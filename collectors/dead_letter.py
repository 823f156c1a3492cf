"""Dead-letter records: what was rejected, why, and where it came from.

One record per rejected item (or per undecodable Kafka message), so an operator can replay
or inspect each one. ``dedup_key`` names the item's origin (e.g. ``spans/2/1187#4``): a
redelivered Kafka message yields the same keys, so DLQ readers can drop repeats.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson

from spanline.collectors.validation import InvalidItem


def dead_letter(
    *,
    reason: str,
    source: str,
    dedup_key: str,
    payload: Any,
    tenant_id: str = "",
    errors: list[dict[str, str]] | None = None,
) -> tuple[bytes, bytes]:
    """A (key, value) Kafka record for ``spans.dlq``."""
    record = {
        "reason": reason,
        "errors": errors or [],
        "source": source,
        "tenant_id": tenant_id,
        "dedup_key": dedup_key,
        "rejected_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "payload": payload if not isinstance(payload, bytes) else payload.decode("utf-8", "backslashreplace"),
    }
    try:
        value = orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254 levels); the reason is what matters
        record["payload"] = f"<{type(payload).__name__} nested too deeply to keep in a dead letter>"
        value = orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS)
    return dedup_key.encode(), value


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
