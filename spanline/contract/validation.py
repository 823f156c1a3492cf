"""Batch validation against the canonical schema, with per-item errors.

Pydantic's core (Rust) validates the whole list in one call, into plain dicts shaped by the
model's fields (:func:`~spanline.contract.schema.span_fields_dict`, ~3x faster than model
instances); only when that fails do we work out which items were bad, so a clean batch pays
for one pass and a dirty one for two. Then the model's cross-field rules run over the batch
at once. Errors name the item index and the field, e.g. ``[3].input_tokens``, exactly as
``Span.model_validate`` would.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from types import GenericAlias
from typing import Any, cast

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypeForm

from spanline.contract.schema import cross_field_errors, span_fields_dict

#: ``list[SpanFieldsDict]``: the TypedDict is built at run time, so the alias is spelled out; the
#: validated items are plain dicts.
_SPANS: TypeAdapter[list[dict[str, Any]]] = TypeAdapter(
    cast("TypeForm[list[dict[str, Any]]]", GenericAlias(list, (span_fields_dict(),)))
)


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
        return "; ".join(
            f"[{self.index}].{e.field}: {e.message}" if e.field else f"[{self.index}]: {e.message}" for e in self.errors
        )


@dataclass
class ValidationResult:
    """Valid spans (with their positions in the input) and invalid items with reasons.

    A valid span is a dict of the fields it gave, validated and normalised (enums as values,
    strings stripped, timestamps parsed); absent fields take the schema's defaults where the
    span becomes a row (spanline.streams.frame).
    """

    spans: list[dict[str, Any]] = field(default_factory=list)
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
    """Validate a list of span objects; never raises, whatever the items hold."""
    try:
        spans, indexes, bad = _validate_list(items)
    except Exception:
        spans, indexes, bad = _validate_each(items)  # one that reads differently twice (an iterator)
    messages = cross_field_errors(spans)
    if any(message is not None for message in messages):
        for index, message in zip(indexes, messages, strict=True):
            if message is not None:  # worded as pydantic words a model validator's ValueError
                bad[index] = [FieldError("", f"Value error, {message}")]
        spans = [span for span, message in zip(spans, messages, strict=True) if message is None]
        indexes = [index for index, message in zip(indexes, messages, strict=True) if message is None]
    invalid = [InvalidItem(i, items[i], tuple(errors)) for i, errors in sorted(bad.items())]
    return ValidationResult(spans=spans, indexes=indexes, invalid=invalid)


_Validated = tuple[list[dict[str, Any]], list[int], dict[int, list[FieldError]]]


def _validate_list(items: list[Any]) -> _Validated:
    """The whole list in one call; when it fails, its errors name the bad items and the rest
    is validated again (a clean batch pays for one pass, a dirty one for two)."""
    try:
        return _SPANS.validate_python(items), list(range(len(items))), {}
    except ValidationError as error:
        bad = _field_errors(error)
    indexes = [i for i in range(len(items)) if i not in bad]
    return (_SPANS.validate_python([items[i] for i in indexes]) if indexes else []), indexes, bad


def _validate_each(items: list[Any]) -> _Validated:
    """One item at a time, so an item that breaks validation itself is refused alone."""
    spans: list[dict[str, Any]] = []
    indexes: list[int] = []
    bad: dict[int, list[FieldError]] = {}
    for index, item in enumerate(items):
        try:
            spans += _SPANS.validate_python([item])
            indexes.append(index)
        except ValidationError as error:
            bad[index] = [e for errors in _field_errors(error).values() for e in errors]
        except Exception as error:
            bad[index] = [FieldError("", f"cannot be validated: {type(error).__name__} while reading it")]
    return spans, indexes, bad
