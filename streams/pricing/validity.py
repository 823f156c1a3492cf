"""Which price-table row is valid for a span: an as-of search on time, then daily windows.

Periods (catalog price changes, corrections, override history) are rows with a ``valid_from``
instant (not only a date: DeepSeek changed prices at 16:00 UTC) and optionally a ``valid_until``;
a span takes the latest period of its price series that started at or before its ``start_time``,
unless that period had already ended (then
the series has no price at that instant and the next layer down applies): periods are sorted by
series and start, and each distinct series of a batch is one ``numpy.searchsorted`` over its
periods (what ``pandas.merge_asof(..., by="series", direction="backward")`` does, without
building frames). Daily windows (rows
with ``daily_from``, such as off-peak discounts) then replace the period price for the spans whose
UTC time of day falls inside them, in table order, while the window itself is valid: each window
has its own ``valid_from`` and ``valid_until``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

DAY_NS: Final = 86_400 * 10**9
NO_ROW: Final = -1
_EARLIEST: Final = int(np.iinfo(np.int64).min)
_LATEST: Final = int(np.iinfo(np.int64).max)


@dataclass(frozen=True)
class Window:
    """A daily UTC price window: table row, [begin, end) since midnight, valid in [from_ns, until_ns)."""

    row: int
    begin_ns: int
    end_ns: int
    from_ns: int
    until_ns: int

    def active(self, epoch_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        clock = np.mod(epoch_ns, DAY_NS)
        if self.end_ns < self.begin_ns:  # wraps around midnight
            in_window = (clock >= self.begin_ns) | (clock < self.end_ns)
        else:
            in_window = (clock >= self.begin_ns) & (clock < self.end_ns)
        return in_window & (epoch_ns >= self.from_ns) & (epoch_ns < self.until_ns)


class Validity:
    """Row lookup by (price series, instant) over one price table."""

    def __init__(self, table: pd.DataFrame) -> None:
        dated = table["daily_from"].isna().to_numpy()
        starts = epoch_ns(table["valid_from"], missing=_EARLIEST)
        until = epoch_ns(table["valid_until"], missing=_LATEST)
        self._until = until
        rows = np.flatnonzero(dated)
        series = table["series"].to_numpy(np.int64)[dated]
        order = np.lexsort((rows, starts[dated], series))  # by series, then start, then table order
        self._period_series, self._period_from, self._period_row = series[order], starts[dated][order], rows[order]
        self._windows: dict[int, list[Window]] = {}
        for row in np.flatnonzero(~dated):
            self._windows.setdefault(int(table["series"].iat[row]), []).append(
                Window(
                    row=int(row),
                    begin_ns=int(table["daily_from"].iat[row].value),
                    end_ns=int(table["daily_until"].iat[row].value),
                    from_ns=int(starts[row]),
                    until_ns=int(until[row]),
                )
            )
        self._windowed_series = np.array(sorted(self._windows), dtype=np.int64)

    def asof(self, series: np.ndarray, at_ns: np.ndarray) -> np.ndarray:
        """Row of each span's ``series`` valid at ``at_ns``; -1 where the series is -1, not valid yet or ended."""
        out = np.full(len(series), NO_ROW, dtype=np.int64)
        wanted = np.flatnonzero(series >= 0)
        if wanted.size == 0:
            return out
        their_series, stamps = series[wanted], at_ns[wanted]
        rows = np.full(wanted.size, NO_ROW, dtype=np.int64)
        for one in np.unique(their_series):
            mine = their_series == one
            first, stop = np.searchsorted(self._period_series, [one, one + 1])
            if first == stop:  # a series with daily windows only
                continue
            # The last period of the series that started at or before the instant (ties: the last in table order).
            latest = np.searchsorted(self._period_from[first:stop], stamps[mine], side="right") - 1
            rows[mine] = np.where(latest >= 0, self._period_row[first + np.maximum(latest, 0)], NO_ROW)
        ended = (rows >= 0) & (stamps >= self._until[np.maximum(rows, 0)])
        out[wanted] = np.where(ended, NO_ROW, rows)
        return out

    def with_windows(self, rows: np.ndarray, series: np.ndarray, at_ns: np.ndarray) -> np.ndarray:
        """``rows`` (from :meth:`asof` on the same ``series``) with active daily windows applied."""
        candidates = np.flatnonzero(np.isin(series, self._windowed_series))
        if candidates.size == 0:
            return rows
        rows = rows.copy()
        their_series, stamps = series[candidates], at_ns[candidates]
        for one in np.unique(their_series):
            mine = their_series == one
            for window in self._windows[int(one)]:
                rows[candidates[mine & window.active(stamps)]] = window.row
        return rows

    def lookup(self, series: np.ndarray, at_ns: np.ndarray) -> np.ndarray:
        """Periods, then daily windows: the row in force for each (series, instant)."""
        return self.with_windows(self.asof(series, at_ns), series, at_ns)


def epoch_ns(column: pd.Series, missing: int | None = None) -> npt.NDArray[np.int64]:
    """UTC epoch nanoseconds of a datetime column (ms or ns; naive values are UTC); NaT -> ``missing``."""
    stamps = pd.DatetimeIndex(column)
    if stamps.tz is None:
        stamps = stamps.tz_localize("UTC")
    values: npt.NDArray[np.int64] = stamps.as_unit("ns").asi8
    return values if missing is None else np.where(stamps.isna(), missing, values)
