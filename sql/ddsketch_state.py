"""ClickHouse ``quantilesDD(0.01, …)`` aggregate states, written from numpy columns.

The worker fills the rollups' latency sketches itself (no materialized view over raw spans), so
it must write the exact bytes ClickHouse keeps for a ``quantilesDDState``: its DDSketch in
DataDog's encoding (ClickHouse's src/AggregateFunctions/DDSketch.h and DDSketch/*.h):

* ``0x02`` (index mapping, logarithmic), gamma and index offset as float64 LE;
* ``0x01`` positive store, ``0x03`` negative store, each ``0x04`` (index deltas and counts):
  uvarint bin count, then per bin a zig-zag varint key delta and the count as float64 LE;
* ``0x04`` (zero count) and the zero bin's count as float64 LE.

ClickHouse's mapping differs from the ``ddsketch`` package the stream windows use: its key is
``int(ln(v) / ln(gamma))`` (truncated toward zero, no ceiling), so the keys here follow
ClickHouse's, and states written here merge with states ClickHouse computed itself
(tests/test_rollup_writer.py compares both byte for byte).
"""

from __future__ import annotations

import struct
import sys

import numpy as np
import numpy.typing as npt

#: The rollups' sketches: quantilesDD(0.01, …) (sql/migrations/0003_rollups.sql).
RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_MULTIPLIER = 1 / np.log(GAMMA)
#: Magnitudes at or below this go to the zero bin, as in ClickHouse.
MIN_POSITIVE = sys.float_info.min * GAMMA

_MAPPING = struct.pack("<Bdd", 0x02, GAMMA, 0.0)
_POSITIVE, _NEGATIVE, _SPARSE, _ZERO_COUNT = b"\x01", b"\x03", b"\x04", 0x04
_VARINT_BYTES = 5  # an int32 key delta, zig-zagged, takes at most 5 bytes of 7 bits


def clickhouse_keys(values: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int64]]:
    """(sign, key) of each value as ClickHouse's DDSketch files it: sign 1 positive store,
    -1 negative store, 0 the zero bin (key 0)."""
    values = np.asarray(values, dtype=np.float64)
    sign = np.where(values > MIN_POSITIVE, 1, np.where(values < -MIN_POSITIVE, -1, 0)).astype(np.int8)
    magnitude = np.where(sign == 0, 1.0, np.abs(values))
    keys = np.trunc(np.log(magnitude) * _MULTIPLIER).astype(np.int64)
    return sign, np.where(sign == 0, 0, keys)


def encode_states(
    group: npt.NDArray[np.int64],
    sign: npt.NDArray[np.int8],
    key: npt.NDArray[np.int64],
    count: npt.NDArray[np.float64],
    groups: int,
) -> list[bytes]:
    """One serialized state per group 0..groups-1 from bins (group, sign, key, count); a group
    without bins gets an empty sketch. Bins may come in any order, one row per distinct bin."""
    order = np.lexsort((key, -sign, group))  # per group: positive store, zero bin, negative store
    group, sign, key, count = group[order], sign[order], key[order], np.asarray(count, dtype=np.float64)[order]
    stored = sign != 0
    zero_counts = np.bincount(group[~stored], weights=count[~stored], minlength=groups)
    body, ends = _bins_bytes(group[stored], sign[stored], key[stored], count[stored])
    store_id = group[stored] * 2 + (sign[stored] < 0)  # (group, positive) then (group, negative)
    firsts = np.searchsorted(store_id, np.arange(2 * groups + 1)).tolist()
    starts = np.concatenate(([0], ends)).tolist()
    zeros = zero_counts.tolist()
    states = []
    for index in range(groups):  # a few hundred groups per batch; the bins were encoded above
        parts = [_MAPPING]
        for store, flag in ((2 * index, _POSITIVE), (2 * index + 1, _NEGATIVE)):
            low, high = firsts[store], firsts[store + 1]
            parts += [flag, _SPARSE, _uvarint(high - low), body[starts[low] : starts[high]]]
        parts.append(struct.pack("<Bd", _ZERO_COUNT, zeros[index]))
        states.append(b"".join(parts))
    return states


def _bins_bytes(
    group: npt.NDArray[np.int64], sign: npt.NDArray[np.int8], key: npt.NDArray[np.int64], count: npt.NDArray[np.float64]
) -> tuple[bytes, npt.NDArray[np.int64]]:
    """Every bin's (key delta varint, count float64) bytes, concatenated, and the end offset of
    each bin's bytes. The delta is to the previous bin of the same store (the first: to 0)."""
    if not len(key):
        return b"", np.zeros(0, dtype=np.int64)
    new_store = np.ones(len(key), dtype=bool)
    new_store[1:] = (group[1:] != group[:-1]) | (sign[1:] != sign[:-1])
    previous = np.concatenate(([0], key[:-1]))
    delta = np.where(new_store, key, key - previous)
    zigzag = ((delta << 1) ^ (delta >> 63)).astype(np.uint64)
    shifts = np.arange(_VARINT_BYTES, dtype=np.uint64) * np.uint64(7)
    groups7 = (zigzag[:, None] >> shifts) & np.uint64(0x7F)
    length = 1 + np.sum(zigzag[:, None] >> shifts[1:] > 0, axis=1)
    position = np.arange(_VARINT_BYTES)
    continued = position[None, :] < (length - 1)[:, None]
    varint = (groups7 | np.where(continued, np.uint64(0x80), np.uint64(0))).astype(np.uint8)
    counts = count.astype("<f8").view(np.uint8).reshape(-1, 8)
    cells = np.hstack((varint, counts))
    keep = np.hstack((position[None, :] < length[:, None], np.ones((len(key), 8), dtype=bool)))
    return cells[keep].tobytes(), np.cumsum(length + 8)


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
