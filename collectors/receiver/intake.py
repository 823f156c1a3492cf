"""From decoded request items to Kafka: stamp tenant, hash user ids, redact content, validate, publish.

Valid items go to ``spans``, invalid ones to ``spans.dlq`` with their reasons, and the
caller hears back only after Kafka acknowledged both, so a 2xx means "durably queued".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spanline.contract.dead_letter import invalid_item_letters
from spanline.contract.hashing import hash_user_id, tenant_salt
from spanline.contract.redact import redact
from spanline.contract.validation import FieldError, InvalidItem, validate_items
from spanline.kafka.publish import SpanPublisher, wait_acked


@dataclass(frozen=True)
class IntakeResult:
    accepted: int
    invalid: list[InvalidItem]

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": len(self.invalid),
            "errors": [
                {"index": i.index, "reason": i.reason, "errors": [e.as_dict() for e in i.errors]} for i in self.invalid
            ],
        }


class Intake:
    """Stamps, validates and publishes one request's items."""

    def __init__(self, publisher: SpanPublisher, dlq_topic: str, master_salt: bytes) -> None:
        self._publisher = publisher
        self._dlq_topic = dlq_topic
        self._master_salt = master_salt
        self._salts: dict[str, bytes] = {}

    async def accept(self, items: list[Any], tenant_id: str, source: str, request_id: str) -> IntakeResult:
        positions, stamped, not_objects = self._stamp(items, tenant_id)
        result = validate_items(stamped)
        valid = [stamped[i] for i in result.indexes]
        schema_errors = [InvalidItem(positions[i.index], i.item, i.errors) for i in result.invalid]
        invalid = sorted(schema_errors + not_objects, key=lambda item: item.index)
        futures = self._publisher.send(valid, source) if valid else []
        letters = invalid_item_letters(invalid, source=source, origin=request_id, tenant_id=tenant_id)
        futures += self._publisher.send_records(self._dlq_topic, letters)
        await wait_acked(futures)
        return IntakeResult(accepted=len(valid), invalid=invalid)

    def _stamp(self, items: list[Any], tenant_id: str) -> tuple[list[int], list[dict[str, Any]], list[InvalidItem]]:
        """Set tenant_id from the key, replace raw user ids by their salted hash, redact content.

        Returns the input positions of the stamped objects, the objects, and the items
        that were not JSON objects at all.
        """
        salt = self._salts.get(tenant_id)
        if salt is None:
            salt = self._salts[tenant_id] = tenant_salt(self._master_salt, tenant_id)
        positions: list[int] = []
        stamped: list[dict[str, Any]] = []
        not_objects: list[InvalidItem] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                not_objects.append(InvalidItem(index, item, (FieldError("", "a span must be a JSON object"),)))
                continue
            item = {**item, "tenant_id": tenant_id}
            user_id = item.pop("user_id", None)
            if user_id is not None:
                item["user_id_hash"] = hash_user_id(salt, str(user_id))
            content = item.get("content")
            if isinstance(content, str):  # clients other than the SDK may send content unredacted
                item["content"] = redact(content)
            positions.append(index)
            stamped.append(item)
        return positions, stamped, not_objects
