"""Spans as columns: one Arrow array per field of the span model, absent fields at their defaults.

Both of the worker's paths end here: the fast path's records (spanline.contract.records) and the
slow path's validated dicts (spanline.contract.validation) are gathered field by field into
Python lists and converted once per column by Arrow's C++ converters; nothing downstream goes
back to one object per span. Types follow the model (:data:`~spanline.contract.records.FIELD_KINDS`):
text and enums as strings, integers as int64, floats as float64, times as UTC microseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from spanline.contract.records import FIELD_KINDS, FIELDS, FieldKind, SpanRecord

#: Timestamps as the fast path holds them: UTC, microseconds (what pydantic resolves).
TIME_TYPE = pa.timestamp("us", tz="UTC")
_SCALAR_TYPES: dict[str, pa.DataType] = {
    "text": pa.large_string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
}
_ITEM_TYPES: dict[str, pa.DataType] = {"text": pa.string(), "float": pa.float64(), "int": pa.int64()}


def arrow_type(kind: FieldKind) -> pa.DataType:
    """The Arrow type of a field's column."""
    if kind.base == "time":
        return TIME_TYPE
    if kind.base == "list":
        return pa.list_(_ITEM_TYPES[kind.item or "text"])
    if kind.base == "dict":
        return pa.map_(pa.string(), pa.string())
    return _SCALAR_TYPES[kind.base]


@dataclass(frozen=True)
class SpanColumns:
    """A batch of spans, one Arrow array per model field; ``values`` keeps the Python lists of the
    container fields (lists, maps), which the rows frame holds as objects. A slice remembers
    the columns it was cut from, so that slices joined back in order cost no copy."""

    arrays: dict[str, pa.Array]
    values: dict[str, list[Any]]
    whole: SpanColumns | None = None  # the columns this is a slice of
    start: int = 0  # where in ``whole`` it starts

    def __len__(self) -> int:
        return len(self.arrays[FIELDS[0]])

    def slice(self, start: int, stop: int) -> SpanColumns:
        whole = self.whole or self
        return SpanColumns(
            {name: array.slice(start, stop - start) for name, array in self.arrays.items()},
            {name: values[start:stop] for name, values in self.values.items()},
            whole,
            self.start + start,
        )

    def take(self, indices: Sequence[int]) -> SpanColumns:
        """The spans at ``indices``, in that order."""
        chosen = pa.array(indices, pa.int64())
        return SpanColumns(
            {name: array.take(chosen) for name, array in self.arrays.items()},
            {name: [values[i] for i in indices] for name, values in self.values.items()},
        )

    @staticmethod
    def concat(parts: Sequence[SpanColumns]) -> SpanColumns:
        """The parts one after another: no copy for one part, or for adjacent slices of the same
        columns (a batch whose every message took the fast path); none at all: no spans."""
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return dict_columns([])
        whole, stop = parts[0].whole, parts[0].start
        for part in parts:
            adjacent = whole is not None and part.whole is whole and part.start == stop
            stop += len(part)
            if not adjacent:
                break
        else:
            assert whole is not None
            return whole if parts[0].start == 0 and stop == len(whole) else whole.slice(parts[0].start, stop)
        return SpanColumns(
            {name: pa.concat_arrays([part.arrays[name] for part in parts]) for name in FIELDS},
            {name: [value for part in parts for value in part.values[name]] for name in parts[0].values},
        )


def record_columns(records: Sequence[Any]) -> SpanColumns:
    """Columns of fast-path records (every field is set: absent ones hold their defaults).

    All values go into one flat list, record after record (each record's tuple is freed at once,
    so the garbage collector never walks them), and each field's column is a strided slice of it:
    both in C, no Python-level attribute lookup per field and span (≈ 3x cheaper, bench/process_cost.py)."""
    flat = list(chain.from_iterable(map(msgspec.structs.astuple, records)))
    return _columns({name: flat[position::_WIDTH] for name, position in _RECORD_POSITIONS.items()}, times_as_text=True)


def dict_columns(spans: Sequence[Mapping[str, Any]]) -> SpanColumns:
    """Columns of validated span dicts (absent fields take the model's defaults, as the records do)."""
    defaults = FIELD_DEFAULTS
    lists: dict[str, list[Any]] = {}
    for name in FIELDS:
        if FIELD_KINDS[name].base == "time":
            lists[name] = [_utc(span.get(name)) for span in spans]
        elif name in _CONTAINERS:
            empty = _CONTAINERS[name]
            lists[name] = [span.get(name) or empty() for span in spans]
        else:
            default = defaults.get(name)
            lists[name] = [span.get(name, default) for span in spans]
    return _columns(lists, times_as_text=False)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _columns(lists: dict[str, list[Any]], *, times_as_text: bool) -> SpanColumns:
    arrays: dict[str, pa.Array] = {}
    values: dict[str, list[Any]] = {}
    for name, kind in FIELD_KINDS.items():
        column = lists[name]
        if kind.base == "time" and times_as_text:
            arrays[name] = pc.cast(pa.array(column, pa.string()), TIME_TYPE)
        else:
            arrays[name] = pa.array(column, arrow_type(kind))
        if kind.base in ("list", "dict"):
            values[name] = column
    return SpanColumns(arrays, values)


#: Field -> default for the fields with a plain default (the records' own, i.e. the model's).
FIELD_DEFAULTS: dict[str, Any] = {
    info.name: info.default for info in msgspec.structs.fields(SpanRecord) if info.default is not msgspec.NODEFAULT
}
#: Field -> its position in a record's tuple (``msgspec.structs.astuple``), in the model's order.
_RECORD_POSITIONS: dict[str, int] = {name: SpanRecord.__struct_fields__.index(name) for name in FIELDS}
_WIDTH = len(SpanRecord.__struct_fields__)
_CONTAINERS = {
    name: (list if kind.base == "list" else dict) for name, kind in FIELD_KINDS.items() if kind.base in ("list", "dict")
}
