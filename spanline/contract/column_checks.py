"""The model's checks that a decoded record cannot carry, run over whole columns.

:mod:`spanline.contract.records` types and bounds every field while decoding; what is left of
the model (spanline.contract.schema) is checked here, vectorised, per span:

- strings with whitespace at either end: the model strips them (``str_strip_whitespace``), so
  the slow path must make their value — any character ``str.isspace`` knows is taken as
  whitespace, a superset of what pydantic strips;
- start and end times outside the storable range;
- the cross-field rules, from the one definition (:func:`~spanline.contract.schema.cross_field_rules`).

A span refused here is not judged: its message goes to the slow path, which decides and words
the reason exactly as it always has.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from spanline.contract.columns import SpanColumns
from spanline.contract.records import FIELD_KINDS
from spanline.contract.schema import STORABLE_FROM, STORABLE_UNTIL, TOKEN_DETAIL_FIELDS, TOKEN_FIELDS, cross_field_rules

_EPOCH_US = 0
_FROM_US = int((STORABLE_FROM.timestamp()) * 1_000_000)
_UNTIL_US = int((STORABLE_UNTIL.timestamp()) * 1_000_000)
_SPACES = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
_SPACE_CLASS = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in _SPACES) + "]"
#: A string that starts or ends with whitespace (RE2 syntax, as Arrow's regex kernels take it).
EDGE_SPACE = f"^{_SPACE_CLASS}|{_SPACE_CLASS}$"
#: Bytes that may start or end a whitespace character in UTF-8: the ASCII ones, and any non-ASCII byte.
_SUSPECT_BYTE = np.zeros(256, dtype=bool)
_SUSPECT_BYTE[[ord(c) for c in _SPACES if ord(c) < 0x80]] = True
_SUSPECT_BYTE[0x80:] = True


def refused(columns: SpanColumns) -> np.ndarray:
    """Per span: True when the fast path must leave it to the slow path."""
    count = len(columns)
    out = np.zeros(count, dtype=bool)
    for name, kind in FIELD_KINDS.items():
        array = columns.arrays[name]
        if kind.base == "text":
            out |= _edge_space(array)
        elif kind.base == "list" and kind.item == "text":
            out |= _nested_edge_space(columns.values[name], chain.from_iterable(columns.values[name]))
        elif kind.base == "dict":
            maps = columns.values[name]
            out |= _nested_edge_space(maps, chain.from_iterable(maps))
            out |= _nested_edge_space(maps, chain.from_iterable(map(dict.values, maps)))
    times = {name: _micros(columns.arrays[name]) for name, kind in FIELD_KINDS.items() if kind.base == "time"}
    for micros in times.values():
        with np.errstate(invalid="ignore"):
            out |= ~np.isnan(micros) & ((micros < _FROM_US) | (micros >= _UNTIL_US))
    out |= _cross_field_broken(columns, times["start_time"], times["end_time"])
    return out


def _edge_space(strings: pa.Array) -> np.ndarray:
    """Per string: starts or ends with whitespace. Only strings whose first or last byte could
    begin or end a whitespace character (ASCII whitespace, any non-ASCII byte) meet the regex."""
    out = np.zeros(len(strings), dtype=bool)
    _, offsets_buffer, data_buffer = strings.buffers()
    if data_buffer is None or data_buffer.size == 0:
        return out
    width = np.dtype(np.int64 if pa.types.is_large_string(strings.type) else np.int32)
    offsets: npt.NDArray[np.int64] = np.frombuffer(
        offsets_buffer, dtype=width, count=len(strings) + 1, offset=strings.offset * width.itemsize
    ).astype(np.int64)
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    present = (offsets[1:] > offsets[:-1]) & np.asarray(pc.is_valid(strings), dtype=bool)
    candidates = np.flatnonzero(present)
    suspect = _SUSPECT_BYTE[data[offsets[candidates]]] | _SUSPECT_BYTE[data[offsets[candidates + 1] - 1]]
    candidates = candidates[suspect]
    if candidates.size:
        out[candidates] = np.asarray(pc.match_substring_regex(strings.take(candidates), EDGE_SPACE), dtype=bool)
    return out


def _nested_edge_space(containers: list[Any], strings: Iterable[str]) -> np.ndarray:
    """Spans with an edge-space string among their list items (or map keys, or map values)."""
    lengths = np.fromiter(map(len, containers), dtype=np.int64, count=len(containers))
    if not lengths.any():
        return np.zeros(len(containers), dtype=bool)
    parents = np.repeat(np.arange(len(containers)), lengths)
    flagged = _edge_space(pa.array(strings, pa.string(), size=int(lengths.sum())))
    return np.bincount(parents[flagged], minlength=len(containers)).astype(bool)


def _micros(times: pa.Array) -> np.ndarray:
    """UTC microseconds as float64, NaN where null (exact: storable times stay below 2**53 µs)."""
    return np.asarray(pc.cast(times, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _cross_field_broken(columns: SpanColumns, start_us: np.ndarray, end_us: np.ndarray) -> np.ndarray:
    arrays = columns.arrays

    def numbers(name: str, missing: float = 0.0) -> np.ndarray:
        return np.asarray(pc.fill_null(arrays[name], missing).to_numpy(zero_copy_only=False), dtype=np.float64)

    has_end = ~np.isnan(end_us)
    # As timedelta.total_seconds() * 1000 computes it: whole µs / 10**6, then * 1000.
    measured = np.where(has_end, ((end_us - start_us) / 1e6) * 1000.0, np.nan)
    status = np.asarray(pc.equal(arrays["status"], "ok"), dtype=bool)
    has_error_type = np.asarray(pc.is_valid(arrays["error_type"]), dtype=bool)
    rules = cross_field_rules(
        has_end=has_end,
        measured_ms=measured,
        duration_ms=numbers("duration_ms", np.nan),
        late_start_ms=(start_us - _EPOCH_US) / 1000.0,
        tokens={name: numbers(name) for name in (*TOKEN_FIELDS, *TOKEN_DETAIL_FIELDS)},
        scores=np.asarray(pc.list_value_length(arrays["retrieval_scores"]), dtype=np.int64),
        doc_ids=np.asarray(pc.list_value_length(arrays["retrieval_doc_ids"]), dtype=np.int64),
        error_while_ok=status & has_error_type,
    )
    broken = np.zeros(len(columns), dtype=bool)
    for mask, _ in rules:
        broken |= mask
    return broken
