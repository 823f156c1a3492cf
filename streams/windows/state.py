"""One partition's open windows, its event-time watermark and its window frontier.

- high: the latest span start_time the partition has seen; watermark = high - lateness.
- frontier: every minute before it is closed (emitted). A window [m, m+1 min) closes when the
  watermark reaches m + 1 min, so the frontier is the watermark's minute.
- On each advance of the frontier the partition emits one record per closed minute that has
  spans, and an empty record for the minute just before the new frontier when that one had
  none: every advance is visible downstream, and a record for minute m tells the merger that
  the partition has closed every minute up to m (see merger.py).
- A span whose minute is already closed is late: it is stored in ClickHouse like any other,
  left out of the (emitted) window, and counted in ``late_spans`` of the next record.
- ``replay_through``: after a restart, offsets up to here were already accounted for by emitted
  records (in a window or as late), so redelivered spans of closed minutes among them are
  neither aggregated nor counted late again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spanline.windows.aggregate import Partials, aggregate, combine, epoch_ms, minute_of, select
from spanline.windows.records import WindowRecord

#: Partials kept per partition before they are folded into one (bounds memory and close cost).
_FOLD_AFTER = 16


class PartitionWindows:
    def __init__(
        self,
        partition: int,
        lateness_ms: int,
        *,
        frontier: int | None = None,
        high_ms: int | None = None,
        replay_through: int = -1,
        through_offset: int = -1,
        late_spans: int = 0,
        open_windows: Partials | None = None,
    ) -> None:
        self.partition = partition
        self.lateness_ms = lateness_ms
        self.frontier = frontier  # epoch seconds; None until the first window closed
        self.high_ms = high_ms
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
        late = 0
        if self.frontier is not None:
            closed = minute_of(times) < self.frontier
            late = int((closed & (offsets > self.replay_through)).sum())
            if closed.any():
                rows = rows.loc[~closed]
        if not len(rows):
            part = None
        elif partials is None:
            part = aggregate(rows)
        else:  # late rows are whole closed minutes: drop those groups instead of aggregating again
            minutes = partials.groups["minute"].to_numpy(dtype=np.int64)
            part = partials if self.frontier is None else select(partials, minutes[minutes >= self.frontier])
        high, through = int(times.max()), int(offsets.max())
        self.late_spans += late
        if part is not None:
            self._parts.append(part)
            if len(self._parts) > _FOLD_AFTER:
                self._parts = [combine(self._parts)]
        self.high_ms = high if self.high_ms is None else max(self.high_ms, high)
        self.through_offset = max(self.through_offset, through)

    def advance(self, high_ms: int) -> None:
        """Move event time forward without spans (an idle partition, see manager.py)."""
        self.high_ms = high_ms if self.high_ms is None else max(self.high_ms, high_ms)

    def close(self) -> list[WindowRecord]:
        """Close every window the watermark has passed; the records to emit, oldest first."""
        if self.high_ms is None:
            return []
        watermark = self.high_ms - self.lateness_ms
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
