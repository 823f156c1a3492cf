"""DDSketch bins computed column-wise, and DDSketch objects rebuilt from them.

``ddsketch.DDSketch.add`` costs ~0.5 µs per value in Python. Here a whole column is mapped to
bucket keys at once with numpy, using the sketch's own :class:`LogarithmicMapping` constants
(key = ceil(log2(v) * multiplier + offset)); values that land within 1e-9 of a bucket boundary,
where numpy's and the C library's logarithms could round apart, are re-keyed by the mapping
itself, so the bins equal what per-value ``add`` produces (tests/test_windows.py checks it).
Bins are then plain (key, count) rows that merge by summing, across batches, partitions and
workers; a sketch object is only built where a consumer wants one (:func:`build_sketch`).
"""

from __future__ import annotations

import math

import numpy as np
from ddsketch import DDSketch
from ddsketch.store import DenseStore

#: Relative accuracy of every stream sketch (the rollups' quantilesDD use the same 0.01).
RELATIVE_ACCURACY = 0.01
_MAPPING = DDSketch(RELATIVE_ACCURACY)._mapping
_LN2 = math.log(2)
#: Bin sign: values above the mapping's smallest positive value, (near) zero, negative.
POSITIVE, ZERO, NEGATIVE = 1, 0, -1


def bucket_keys(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sign, key) per value, as ``DDSketch.add`` would file it; keys of zero-signed values are 0."""
    values = np.asarray(values, dtype=np.float64)
    sign = np.where(
        values > _MAPPING.min_possible, POSITIVE, np.where(values < -_MAPPING.min_possible, NEGATIVE, ZERO)
    ).astype(np.int8)
    magnitude = np.where(sign == ZERO, 1.0, np.abs(values))
    exact = np.log(magnitude) / _LN2 * _MAPPING._multiplier + _MAPPING._offset
    keys = np.ceil(exact)
    near = np.flatnonzero((sign != ZERO) & (np.abs(exact - np.rint(exact)) < 1e-9))
    for index in near.tolist():  # rare: boundary values are keyed exactly as the library does
        keys[index] = _MAPPING.key(float(magnitude[index]))
    keys = np.where(sign == ZERO, 0, keys).astype(np.int64)
    return sign, keys


def build_sketch(
    signs: np.ndarray, keys: np.ndarray, counts: np.ndarray, total: float, low: float, high: float
) -> DDSketch:
    """A DDSketch holding the given bins (and the exact sum/min/max of its values)."""
    sketch = DDSketch(RELATIVE_ACCURACY)
    signs, keys, counts = np.asarray(signs), np.asarray(keys), np.asarray(counts, dtype=np.float64)
    for store, sign in ((sketch._store, POSITIVE), (sketch._negative_store, NEGATIVE)):
        chosen = signs == sign
        if chosen.any():
            _fill(store, keys[chosen], counts[chosen])
    sketch._zero_count = float(counts[signs == ZERO].sum())
    sketch._count = float(counts.sum())
    sketch._sum, sketch._min, sketch._max = float(total), float(low), float(high)
    return sketch


def _fill(store: DenseStore, keys: np.ndarray, counts: np.ndarray) -> None:
    """Set a DenseStore's bins in one go: extend its range to [min key, max key], then add."""
    low, high = int(keys.min()), int(keys.max())
    store._extend_range(low, high)
    bins = np.asarray(store.bins, dtype=np.float64)
    np.add.at(bins, keys - store.offset, counts)
    store.bins = bins.tolist()
    store.count += float(counts.sum())


def sketch_state(sketch: DDSketch) -> dict[str, object]:
    """A sketch's bins and summary, for comparing sketches built in different ways."""

    def bins(store: DenseStore) -> dict[int, float]:
        return {index + store.offset: count for index, count in enumerate(store.bins) if count}

    return {
        "positive": bins(sketch._store),
        "negative": bins(sketch._negative_store),
        "zero": sketch._zero_count,
        "count": sketch.count,
        "sum": sketch.sum,
        "min": sketch._min,
        "max": sketch._max,
    }
