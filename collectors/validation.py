"""Batch validation against the canonical schema, with per-item errors.

Pydantic's core (Rust) validates the whole list in one call; only when that fails do we
work out which items were bad, so a clean batch pays for one validation pass and a dirty
one for two. Errors name the item index and the field, e.g. ``[3].input_tokens``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from spanline.collectors.schema import Span

_SPANS = TypeAdapter(list[Span])


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True)
class InvalidItem:
    index: int
    item: Any
    errors: tuple[FieldError, ...]

    @property
    def reason(self) -> str:
        return "; ".join(f"[{self.index}].{e.field}: {e.message}" if e.field else f"[{self.index}]: {e.message}" for e in self.errors)


@dataclass
class ValidationResult:
    """Valid spans (with their positions in the input) and invalid items with reasons."""

    spans: list[Span] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    invalid: list[InvalidItem] = field(default_factory=list)


def _field_errors(error: ValidationError) -> dict[int, list[FieldError]]:
    by_index: dict[int, list[FieldError]] = defaultdict(list)
    for detail in error.errors(include_url=False, include_input=False):
        loc = detail["loc"]
        index = loc[0] if loc and isinstance(loc[0], int) else -1
        path = ".".join(str(part) for part in loc[1:])
        by_index[int(index)].append(FieldError(path, detail["msg"]))
    return by_index


def validate_items(items: list[Any]) -> ValidationResult:
    """Validate a list of span objects; never raises for bad items."""
    try:
        return ValidationResult(spans=_SPANS.validate_python(items), indexes=list(range(len(items))))
    except ValidationError as error:
        bad = _field_errors(error)
    good_indexes = [i for i in range(len(items)) if i not in bad]
    result = ValidationResult(
        spans=_SPANS.validate_python([items[i] for i in good_indexes]) if good_indexes else [],
        indexes=good_indexes,
        invalid=[InvalidItem(i, items[i], tuple(errors)) for i, errors in sorted(bad.items())],
    )
    return result
