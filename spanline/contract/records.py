"""The worker's fast path: JSON bytes decoded and type-checked in C into records generated from
the span model.

msgspec decodes a message straight into ``SpanRecord`` structs: the model's fields with their
types, numeric ranges, lengths, enum values and defaults, unknown fields refused — several times
cheaper than pydantic, with no dict per span. The model stays the one definition: the struct is
generated from ``Span.model_fields`` at import, and a field whose type or constraint this module
does not know stops the import rather than being checked loosely.

What a struct cannot express is checked afterwards over whole columns
(:mod:`spanline.contract.column_checks`): strings pydantic would strip, the storable time range
and the cross-field rules. Whatever the fast path refuses goes to pydantic
(:func:`spanline.contract.validation.validate_items`), which words every reason; so the fast path
only ever accepts a subset of what the model accepts, with the same values
(tests/test_fast_path.py proves it on generated valid and invalid items).

Times are taken only as RFC 3339 text with an explicit offset and at most six fractional digits:
pydantic truncates longer fractions where msgspec rounds, and naive times need the model's UTC
rule, so those spans take the slow path.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin

import annotated_types
import msgspec
from pydantic.fields import FieldInfo

from spanline.contract.schema import Span

#: RFC 3339 with an explicit offset and at most microseconds: what the fast path parses exactly
#: as pydantic does (the rest takes the slow path).
TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"


@dataclass(frozen=True)
class FieldKind:
    """How a field becomes a column: its base type, and whether it may be null."""

    base: str  # "text", "int", "float", "bool", "time", "list", "dict"
    nullable: bool
    item: str | None = None  # base of a list's items


def _constraints(metadata: list[Any]) -> dict[str, Any]:
    """msgspec Meta arguments from pydantic/annotated-types metadata; refuses anything unknown."""
    meta: dict[str, Any] = {}
    for entry in metadata:
        if isinstance(entry, FieldInfo):
            meta |= _constraints(entry.metadata)
        elif isinstance(entry, annotated_types.Ge):
            meta["ge"] = entry.ge
        elif isinstance(entry, annotated_types.Le):
            meta["le"] = entry.le
        elif isinstance(entry, annotated_types.Gt):
            meta["gt"] = entry.gt
        elif isinstance(entry, annotated_types.Lt):
            meta["lt"] = entry.lt
        elif isinstance(entry, annotated_types.MinLen):
            meta["min_length"] = entry.min_length
        elif isinstance(entry, annotated_types.MaxLen):
            meta["max_length"] = entry.max_length
        elif type(entry).__name__ == "AllowInfNan" and not getattr(entry, "allow_inf_nan", True):
            continue  # JSON has no NaN; an overflow to inf is refused by msgspec ("out of range")
        elif type(entry).__name__ == "AfterValidator" and "_storable_utc" in getattr(entry.func, "__qualname__", ""):
            continue  # the storable time range: checked over the time columns (column_checks)
        else:
            raise TypeError(f"the fast path does not know the span model's constraint {entry!r}: teach records.py")
    return meta


def _convert(annotation: Any, metadata: list[Any]) -> tuple[Any, FieldKind]:
    """The msgspec type of a model annotation, and its column kind."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extra = get_args(annotation)
        return _convert(inner, [*extra, *metadata])
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(options) != 1 or len(get_args(annotation)) != 2:
            raise TypeError(f"the fast path takes X | None unions only, not {annotation!r}")
        inner_type, kind = _convert(options[0], metadata)
        return inner_type | None, FieldKind(kind.base, True, kind.item)
    meta = _constraints(metadata)
    if annotation is float:  # finite only: msgspec refuses JSON numbers that overflow to inf
        meta = {"ge": -sys.float_info.max, "le": sys.float_info.max} | meta
    wrapped: Callable[[Any], Any] = (lambda t: Annotated[t, msgspec.Meta(**meta)]) if meta else (lambda t: t)
    if annotation is bool:
        return wrapped(bool), FieldKind("bool", False)
    if annotation is int:
        return wrapped(int), FieldKind("int", False)
    if annotation is float:
        return wrapped(float), FieldKind("float", False)
    if annotation is str:
        return wrapped(str), FieldKind("text", False)
    if annotation is datetime:
        return Annotated[str, msgspec.Meta(pattern=TIME_PATTERN)], FieldKind("time", False)
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        values = tuple(member.value for member in annotation)
        return Literal[values], FieldKind("text", False)
    if origin is Literal:
        values = get_args(annotation)
        if all(isinstance(value, int) and not isinstance(value, bool) for value in values):
            return annotation, FieldKind("int", False)
        if all(isinstance(value, str) for value in values):
            return annotation, FieldKind("text", False)
        raise TypeError(f"the fast path takes literals of one type, not {annotation!r}")
    if origin is list:
        (item,) = get_args(annotation)
        item_type, item_kind = _convert(item, [])
        return wrapped(list[item_type]), FieldKind("list", False, item_kind.base)  # type: ignore[valid-type]
    if origin is dict:
        key, value = get_args(annotation)
        key_type, key_kind = _convert(key, [])
        value_type, value_kind = _convert(value, [])
        if (key_kind.base, value_kind.base) != ("text", "text"):
            raise TypeError(f"the fast path takes string-to-string maps only, not {annotation!r}")
        return wrapped(dict[key_type, value_type]), FieldKind("dict", False, "text")  # type: ignore[valid-type]
    raise TypeError(f"the fast path does not know the span model's type {annotation!r}: teach records.py")


def _default(info: FieldInfo) -> Any:
    if info.is_required():
        return msgspec.NODEFAULT
    if info.default_factory is not None:
        return msgspec.field(default_factory=cast("Callable[[], Any]", info.default_factory))
    default = info.get_default()
    return default.value if isinstance(default, Enum) else default


def _record_type() -> tuple[type[msgspec.Struct], dict[str, FieldKind]]:
    fields: list[tuple[str, Any, Any]] = []
    kinds: dict[str, FieldKind] = {}
    for name, info in Span.model_fields.items():
        field_type, kind = _convert(info.annotation, list(info.metadata))
        fields.append((name, field_type, _default(info)))
        kinds[name] = kind
    # msgspec wants required fields first; the model's order is kept in FIELD_KINDS.
    fields.sort(key=lambda spec: spec[2] is not msgspec.NODEFAULT)
    record = msgspec.defstruct(
        "SpanRecord",
        [(name, kind) if default is msgspec.NODEFAULT else (name, kind, default) for name, kind, default in fields],
        forbid_unknown_fields=Span.model_config.get("extra") == "forbid",
        omit_defaults=True,
        frozen=True,
        gc=False,  # records hold no cycles: no GC tracking for millions of them
    )
    return record, kinds


SpanRecord, FIELD_KINDS = _record_type()
#: The model's fields in the model's order.
FIELDS: tuple[str, ...] = tuple(FIELD_KINDS)
_DECODER = msgspec.json.Decoder(list[SpanRecord] | SpanRecord)  # type: ignore[valid-type]  # generated at import


def decode_records(value: bytes | None) -> list[Any] | None:
    """A message's spans as records, or None when the fast path cannot take the message as a
    whole (not JSON, a wrong type, a range or length broken, an unknown field …): then the
    slow path decodes it and says why."""
    if not value:
        return None
    try:
        decoded = _DECODER.decode(value)
    except (msgspec.DecodeError, ValueError, TypeError):
        return None
    return [decoded] if isinstance(decoded, SpanRecord) else cast("list[Any]", decoded)
