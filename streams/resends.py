"""Span-level idempotency: a span re-sent by a client is stored and counted once.

A client re-sends a span when a response is lost (an OTLP exporter's retry, a body POSTed twice,
a message produced twice). The span keeps its identity, (tenant_id, trace_id, span_id), but
arrives in a new Kafka message at a new offset, so the offset-based insert deduplication
(streams/batcher.py) cannot see it. Spans of one trace share a partition (the message key is the
trace id), so each partition keeps the keys it stored recently and drops a span whose key it
already holds.

"Recently" is measured in Kafka message time, never the wall clock: a span is a re-send when
the same key was stored from an earlier offset of the partition whose message timestamp is at
most ``window_ms`` older than its own. That is a function of the partition's log alone, so a
batch replayed after a crash is filtered exactly as it was the first time, and the raw table,
the rollups and the stream windows keep agreeing. After a restart at offset R the keys are
reloaded from the ``spans`` rows of the partition below R (``kafka_timestamp`` column).

Keys are 64-bit hashes (pandas' SipHash with its fixed key, so stable across processes); at
one million stored keys a false "re-send" has a probability of about 3e-8 per span.
Memory: 16 bytes per key held (hash + timestamp), in sorted runs merged like an LSM tree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

#: How far behind the newest message timestamp a partition still looks for re-sends of
#: out-of-order messages (producers' clocks differ a little; CreateTime is the client's).
CLOCK_SLACK_MS = 300_000
_SEPARATOR = "\x1f"


def span_keys(tenants: Sequence[object], traces: Sequence[object], spans: Sequence[object]) -> npt.NDArray[np.uint64]:
    """The 64-bit identity of each span: a hash of (tenant_id, trace_id, span_id)."""
    joined = np.fromiter(
        (
            f"{tenant}{_SEPARATOR}{trace}{_SEPARATOR}{span}"
            for tenant, trace, span in zip(tenants, traces, spans, strict=True)
        ),
        dtype=object,
        count=len(spans),
    )
    keys: npt.NDArray[np.uint64] = pd.util.hash_array(joined, categorize=False)
    return keys


class RecentSpans:
    """The span keys one partition stored in the last ``window_ms`` of message time."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (keys sorted, stamps), newest run last
        self._newest_ms: int | None = None

    def __len__(self) -> int:
        return sum(len(keys) for keys, _ in self._runs)

    @property
    def nbytes(self) -> int:
        return sum(keys.nbytes + stamps.nbytes for keys, stamps in self._runs)

    def resends(self, keys: np.ndarray, stamps: np.ndarray) -> np.ndarray:
        """Which spans (in offset order) repeat a key stored, or seen earlier in this batch,
        within the window before their own message time."""
        repeated = np.zeros(len(keys), dtype=bool)
        if not len(keys) or self.window_ms <= 0:
            return repeated
        oldest_allowed = stamps - self.window_ms
        for run_keys, run_stamps in self._runs:
            # the run is sorted by (key, stamp): the rightmost equal key carries its newest stamp
            position = np.searchsorted(run_keys, keys, side="right") - 1
            valid = position >= 0
            position = np.where(valid, position, 0)
            repeated |= valid & (run_keys[position] == keys) & (run_stamps[position] >= oldest_allowed)
        repeated |= _earlier_in_batch(keys, stamps, self.window_ms)
        return repeated

    def add(self, keys: np.ndarray, stamps: np.ndarray) -> None:
        """Remember stored spans' keys; forget keys too old to matter for any later message."""
        if not len(keys) or self.window_ms <= 0:
            return
        newest = int(stamps.max())
        self._newest_ms = newest if self._newest_ms is None else max(self._newest_ms, newest)
        self._runs.append(_sorted_run(keys, stamps))
        # size-tiered merging: O(log n) runs, each key re-sorted O(log n) times
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            newer = self._runs.pop()
            older = self._runs.pop()
            self._runs.append(
                self._evicted(_sorted_run(np.concatenate([older[0], newer[0]]), np.concatenate([older[1], newer[1]])))
            )
        self._runs = [run for run in self._runs if len(run[0])]

    def _evicted(self, run: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        horizon = (self._newest_ms or 0) - self.window_ms - CLOCK_SLACK_MS
        keep = run[1] >= horizon
        return (run[0][keep], run[1][keep]) if not keep.all() else run


def _sorted_run(keys: np.ndarray, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((stamps, keys))
    return keys[order], stamps[order]


def _earlier_in_batch(keys: np.ndarray, stamps: np.ndarray, window_ms: int) -> npt.NDArray[np.bool_]:
    """Spans whose key occurred at an earlier position of the same batch within the window."""
    frame = pd.DataFrame({"key": keys, "stamp": stamps})
    repeated: npt.NDArray[np.bool_] = frame.duplicated("key", keep="first").to_numpy()
    if not repeated.any():
        return repeated
    previous: npt.NDArray[np.float64] = frame.groupby("key", sort=False)["stamp"].shift(1).to_numpy(dtype="float64")
    return repeated & (previous >= stamps - window_ms)
