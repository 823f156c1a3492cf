"""Merging the per-partition window records of ``metrics`` into whole minutes.

A record for (partition p, minute m) means p has closed every minute up to m (state.py: each
frontier advance emits the closed minutes and, if it had no spans, the last passed minute), so
p's frontier is m + 1 min. A minute is complete once every partition's frontier has passed it;
its figures merge all records received for it. Partitions close a minute as soon as a trace root
``grace`` past its end has arrived (streams/windows/state.py), so a minute is evaluated once
every partition has reported it, not after the allowed lateness. Duplicates (a window re-emitted after a crash
between the Kafka ack and the ``metric_windows`` record) are dropped by (partition, minute).

No partition's minutes are ever left out while it is alive: a partition that lags (a backlog, a
fast replay consumed unevenly) holds every later minute back until it catches up, however far
behind in event time it is. Only a *silent* partition stops holding minutes back: one that has not
reported for ``stall_s`` of wall clock (its worker is gone, or it has had no spans since the
merger started). Minutes then complete without it; records it sends later for those minutes are
counted in ``late_records`` and left out. ``silent_reporters`` names the partitions that did
report and then went silent, which the pipeline rule ``alert_input_incomplete`` pages on
(a partition that never had traffic is not an incident). Quiet partitions that did report keep
advancing on their own (streams/windows/manager.py: idle partitions), so they never go silent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from spanline.windows.aggregate import COUNTS, DIMENSIONS, MAPS, SKETCHES, SUMS, Partials, combine
from spanline.windows.records import WindowRecord, decode
from spanline.windows.sketches import build_sketch

#: Default wall-clock silence after which a partition stops holding minutes back.
STALL_SECONDS = 120.0


@dataclass(frozen=True)
class MinuteFigures:
    minute: datetime  # UTC start of the minute
    frame: pd.DataFrame  # one row per grain group: keys, counters, maps (dicts), sketches (DDSketch or None)
    late_spans: int  # spans that arrived after their window closed (still stored in ClickHouse)


class MinuteMerger:
    """Merges the per-partition window records of `metrics` into whole minutes."""

    def __init__(
        self, partitions: int, stall_s: float = STALL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.partitions = partitions
        self._stall_s = stall_s
        self._clock = clock
        self._started = clock()
        self._heard: dict[int, float] = {}  # wall clock of each partition's latest record
        self.late_records = 0  # records of a silent partition for minutes completed without it
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
        self._heard[record.partition] = self._clock()
        if self._completed_through is not None and record.minute < self._completed_through:
            self.late_records += 1
            return []
        by_partition = self._pending.setdefault(record.minute, {})
        if record.partition in by_partition:
            return []
        by_partition[record.partition] = record
        self._frontier[record.partition] = max(self._frontier.get(record.partition, 0), record.minute + 60)
        return self._complete()

    def silent_reporters(self) -> list[int]:
        """Partitions that reported and then fell silent: their minutes are missing from the figures."""
        return [partition for partition in self._heard if self._silent(partition, self._clock())]

    def _silent(self, partition: int, now: float) -> bool:
        return now - self._heard.get(partition, self._started) >= self._stall_s

    def _complete(self) -> list[MinuteFigures]:
        lead = max(self._frontier.values())
        floor = min(self._pending) if self._pending else lead
        now = self._clock()
        holding = [p for p in range(self.partitions) if not self._silent(p, now)]
        complete_before = min((self._frontier.get(p, floor) for p in holding), default=lead)
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
