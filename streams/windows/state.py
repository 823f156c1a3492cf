"""One partition's open windows, its event-time frontiers and its window frontier.

- high: the latest span start_time the partition has seen; watermark = high - lateness.
- root high: the latest start_time of a trace's root span (no parent). Spans travel with their
  trace (Kafka key = trace_id) and a root arrives no earlier than its children (an SDK exports
  a span when it ends, and a replay sends a trace whole), so once the root high has passed a
  minute's end by ``grace``, that minute's spans have arrived but for spans of traces still
  running. The window watermark is the later of the two: high - lateness (the bound for spans
  whose roots never arrive here) and root high - grace (early close).
- frontier: every minute before it is closed (emitted). A window [m, m+1 min) closes when the
  watermark reaches m + 1 min, so the frontier is the watermark's minute.
- On each advance of the frontier the partition emits one record per closed minute that has
  spans, and an empty record for the minute just before the new frontier when that one had
  none: every advance is visible downstream, and a record for minute m tells the merger that
  the partition has closed every minute up to m (see spanline/windows/merger.py).
- A span whose minute is already closed is late: stored in ClickHouse and its own minute's
  rollup like any other, counted in ``late_spans`` of the next record, and aggregated into the
  first open minute (the frontier), so alert figures see it once, in the minute being evaluated
  when it arrived, instead of never.
- ``replay_through``: after a restart, offsets up to here were already accounted for by emitted
  records (in a window or as late), so redelivered spans of closed minutes among them are
  neither aggregated nor counted late again.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from spanline.windows.aggregate import Partials, aggregate, combine, epoch_ms, minute_of, restamp, select
from spanline.windows.records import WindowRecord

#: Partials kept per partition before they are folded into one (bounds memory and close cost).
_FOLD_AFTER = 16


class PartitionWindows:
    def __init__(
        self,
        partition: int,
        lateness_ms: int,
        *,
        grace_ms: int | None = None,
        frontier: int | None = None,
        high_ms: int | None = None,
        root_high_ms: int | None = None,
        replay_through: int = -1,
        through_offset: int = -1,
        late_spans: int = 0,
        open_windows: Partials | None = None,
    ) -> None:
        self.partition = partition
        self.lateness_ms = lateness_ms
        self.grace_ms = grace_ms  # None: windows close by lateness only
        self.frontier = frontier  # epoch seconds; None until the first window closed
        self.high_ms = high_ms
        self.root_high_ms = root_high_ms
        self.replay_through = replay_through
        self.through_offset = through_offset
        self.late_spans = late_spans
        self._parts: list[Partials] = [] if open_windows is None or not len(open_windows.groups) else [open_windows]

    @property
    def open_minutes(self) -> list[int]:
        return sorted({int(m) for part in self._parts for m in part.groups["minute"].unique()})

    def add(self, rows: pd.DataFrame, partials: Partials | None = None) -> None:
        """Add stored span rows (spans-table columns) of this partition, in offset order;
        ``partials``, when given, are the rows' aggregate already made (for the minute rollup).

        Everything that can fail on the rows' content runs before the state changes, so a
        failed add leaves the partition as it was (the pipeline then isolates the bad rows)."""
        if not len(rows):
            return
        times = epoch_ms(rows["start_time"])
        offsets = rows["kafka_offset"].to_numpy(dtype=np.int64)
        roots = times[root_mask(rows)]
        part, late = self._open_part(rows, times, offsets, partials)
        high, through = int(times.max()), int(offsets.max())
        self.late_spans += late
        if part is not None and len(part.groups):
            self._parts.append(part)
            if len(self._parts) > _FOLD_AFTER:
                self._parts = [combine(self._parts)]
        self.high_ms = high if self.high_ms is None else max(self.high_ms, high)
        if len(roots):
            root_high = int(roots.max())
            self.root_high_ms = root_high if self.root_high_ms is None else max(self.root_high_ms, root_high)
        self.through_offset = max(self.through_offset, through)

    def _open_part(
        self,
        rows: pd.DataFrame,
        times: npt.NDArray[np.int64],
        offsets: npt.NDArray[np.int64],
        partials: Partials | None,
    ) -> tuple[Partials, int]:
        """The rows' aggregate for the open windows (late rows moved to the frontier minute),
        and how many rows are late."""
        if partials is None:
            partials = aggregate(rows)
        if self.frontier is None:
            return partials, 0
        minutes = minute_of(times)
        closed = minutes < self.frontier
        if not closed.any():
            return partials, 0
        late = closed & (offsets > self.replay_through)
        group_minutes = partials.groups["minute"].to_numpy(dtype=np.int64)
        on_time = select(partials, group_minutes[group_minutes >= self.frontier])
        if not late.any():
            return on_time, 0
        if late.sum() == closed.sum():  # the usual case: every closed row is new, take their groups
            moved = select(partials, group_minutes[group_minutes < self.frontier])
        else:  # some were accounted for before a restart: aggregate only the new late rows
            moved = aggregate(rows.loc[late])
        return combine([on_time, restamp(moved, self.frontier)]), int(late.sum())

    def advance(self, high_ms: int, root_high_ms: int | None = None) -> None:
        """Move event time forward without spans (an idle partition, see manager.py)."""
        self.high_ms = high_ms if self.high_ms is None else max(self.high_ms, high_ms)
        if root_high_ms is not None:
            self.root_high_ms = root_high_ms if self.root_high_ms is None else max(self.root_high_ms, root_high_ms)

    @property
    def watermark_ms(self) -> int | None:
        """Every minute ending at or before it may close: high - lateness, or root high - grace
        when that is later."""
        if self.high_ms is None:
            return None
        watermark = self.high_ms - self.lateness_ms
        if self.grace_ms is not None and self.root_high_ms is not None:
            watermark = max(watermark, self.root_high_ms - self.grace_ms)
        return watermark

    def close(self) -> list[WindowRecord]:
        """Close every window the watermark has passed; the records to emit, oldest first."""
        watermark = self.watermark_ms
        if watermark is None or self.high_ms is None:
            return []
        new_frontier = int(minute_of(np.int64(watermark)))
        open_minutes = self.open_minutes
        if self.frontier is not None and new_frontier <= self.frontier:
            return []
        if self.frontier is None and open_minutes and new_frontier <= open_minutes[0]:
            return []  # nothing closed yet; a partition with no spans at all reports its first frontier
        closing = [minute for minute in open_minutes if minute < new_frontier]
        if not closing or closing[-1] != new_frontier - 60:
            closing.append(new_frontier - 60)
        merged = combine(self._parts)
        records: list[WindowRecord] = []
        for minute in closing:
            records.append(
                WindowRecord(
                    partition=self.partition,
                    minute=minute,
                    through_offset=self.through_offset,
                    high_ms=self.high_ms,
                    watermark_ms=watermark,
                    late_spans=self.late_spans if not records else 0,
                    partials=select(merged, np.array([minute])),
                )
            )
        remaining = [minute for minute in open_minutes if minute >= new_frontier]
        self._parts = [select(merged, np.array(remaining, dtype=np.int64))] if remaining else []
        self.late_spans = 0
        self.frontier = new_frontier
        return records


def root_mask(rows: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Which rows are a trace's root span (no parent; stored as '')."""
    parents = rows["parent_span_id"]
    mask: npt.NDArray[np.bool_] = (parents.isna() | (parents == "")).to_numpy(dtype=bool)
    return mask
