"""Merging the per-partition window records of ``metrics`` into whole minutes.

A record for (partition p, minute m) means p has closed every minute up to m (state.py: each
frontier advance emits the closed minutes and, if it had no spans, the last passed minute), so
p's frontier is m + 1 min. A minute is complete once every partition's frontier has passed it;
its figures merge all records received for it. Duplicates (a window re-emitted after a crash
between the Kafka ack and the ``metric_windows`` record) are dropped by (partition, minute).

Partitions that never report (no traffic since their worker started) must not stall the merger:
once the most advanced partition is ``stall_minutes`` ahead of a partition (or of the first
minute seen, for one that never reported), minutes older than that lead complete without it.
Quiet partitions that did report keep advancing on their own (manager.py: idle partitions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from spanline.windows.aggregate import COUNTS, DIMENSIONS, MAPS, SKETCHES, SUMS, Partials, combine
from spanline.windows.records import WindowRecord, decode
from spanline.windows.sketches import build_sketch

#: Default event-time lead after which a partition that does not report stops holding minutes back.
STALL_MINUTES = 30


@dataclass(frozen=True)
class MinuteFigures:
    minute: datetime  # UTC start of the minute
    frame: pd.DataFrame  # one row per grain group: keys, counters, maps (dicts), sketches (DDSketch or None)
    late_spans: int  # spans that arrived after their window closed (still stored in ClickHouse)


class MinuteMerger:
    """Merges the per-partition window records of `metrics` into whole minutes."""

    def __init__(self, partitions: int, stall_minutes: int = STALL_MINUTES) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.partitions = partitions
        self._stall_s = stall_minutes * 60
        self._frontier: dict[int, int] = {}
        self._pending: dict[int, dict[int, WindowRecord]] = {}
        self._completed_through: int | None = None  # every minute before it was returned already

    @property
    def complete_before(self) -> datetime | None:
        """Every minute before this one has been returned by ``add`` (None: nothing complete yet)."""
        return None if self._completed_through is None else datetime.fromtimestamp(self._completed_through, UTC)

    def add(self, value: bytes) -> list[MinuteFigures]:
        """Returns the minutes that became complete (every partition reported), oldest first;
        a duplicate record (same partition and minute) is ignored."""
        record = decode(value)
        if not 0 <= record.partition < self.partitions:
            raise ValueError(f"record of partition {record.partition}, but the merger expects {self.partitions}")
        if self._completed_through is not None and record.minute < self._completed_through:
            return []
        by_partition = self._pending.setdefault(record.minute, {})
        if record.partition in by_partition:
            return []
        by_partition[record.partition] = record
        self._frontier[record.partition] = max(self._frontier.get(record.partition, 0), record.minute + 60)
        return self._complete()

    def _complete(self) -> list[MinuteFigures]:
        lead = max(self._frontier.values())
        floor = min(self._pending) if self._pending else lead
        frontiers = [self._frontier.get(partition, floor) for partition in range(self.partitions)]
        complete_before = min(max(f, lead - self._stall_s) for f in frontiers)  # a stalled one trails the lead
        ready = sorted(minute for minute in self._pending if minute < complete_before)
        if self._completed_through is None or complete_before > self._completed_through:
            self._completed_through = complete_before
        return [merge_minute(minute, list(self._pending.pop(minute).values())) for minute in ready]


def merge_minute(minute: int, records: list[WindowRecord]) -> MinuteFigures:
    """One minute's figures from its partitions' records."""
    merged = combine([record.partials for record in records])
    return MinuteFigures(
        minute=datetime.fromtimestamp(minute, UTC),
        frame=figures_frame(merged),
        late_spans=sum(record.late_spans for record in records),
    )


def figures_frame(partials: Partials) -> pd.DataFrame:
    """Partials as the contract's frame: maps as dicts, sketches as DDSketch (None if empty)."""
    count = len(partials.groups)
    frame = partials.groups.loc[:, list(DIMENSIONS)].reset_index(drop=True)
    frame["minute"] = pd.to_datetime(partials.groups["minute"].to_numpy(), unit="s", utc=True)
    for name in (*COUNTS, *SUMS):
        frame[name] = partials.counters[name].to_numpy()
    for index, (name, counts) in enumerate(MAPS.items()):
        frame[name] = _dicts(partials.maps[partials.maps["map"] == index], count, counts)
    for index, name in enumerate(SKETCHES):
        frame[f"{name}_sketch"] = _sketches(partials, index, count)
    return frame


def _dicts(rows: pd.DataFrame, count: int, counts: bool) -> list[dict[str, float | int]]:
    out: list[dict[str, float | int]] = [{} for _ in range(count)]
    values = rows["value"].to_numpy()
    values = values.round().astype(np.int64).tolist() if counts else values.tolist()
    for group, key, value in zip(rows["group"].tolist(), rows["key"].tolist(), values, strict=False):
        out[group][key] = value
    return out


def _sketches(partials: Partials, sketch: int, count: int) -> list[object]:
    out: list[object] = [None] * count
    bins = partials.bins[partials.bins["sketch"] == sketch]
    stats = partials.stats[partials.stats["sketch"] == sketch].set_index("group")
    for group, chosen in bins.groupby("group", sort=False):
        summary = stats.loc[group]
        out[int(group)] = build_sketch(
            chosen["sign"].to_numpy(),
            chosen["key"].to_numpy(),
            chosen["count"].to_numpy(),
            summary["sum"],
            summary["min"],
            summary["max"],
        )
    return out
