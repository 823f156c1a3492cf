"""A metric's num and den per scope and minute over the evaluator's recent minute frames: what
the noise references of the significance tests read (:mod:`spanline.alerts.spend_noise`,
:mod:`spanline.alerts.proportion_noise`).

A reference re-reads the same hundred frames minute after minute. Each frame's parts are grouped
once per (metric, key, dims) and remembered beside the frame, for as long as the frame lives (by
identity; minute frames are never changed once recorded), so a minute's reference groups only
the frames it has not seen: concatenating and grouping all hundred again took 40 % of a
low-rate replay.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from datetime import datetime

import pandas as pd

from spanline.alerts.metrics import Metric, keyed_rows
from spanline.windows.aggregate import DIMENSIONS

#: (metric name, key, dims): one grouping of a frame.
PartsKey = tuple[str, str | None, tuple[str, ...]]
#: id(frame) -> (the frame, weakly; its groupings: num and den per scope, None when it has no rows).
_REMEMBERED: dict[int, tuple[weakref.ref[pd.DataFrame], dict[PartsKey, pd.DataFrame | None]]] = {}


def minute_parts(
    chosen: list[tuple[datetime, pd.DataFrame]], metric: Metric, dims: tuple[str, ...], key: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The metric's num and den as scopes × the ``chosen`` minutes (in time order; a minute handed
    over in two frames is one column), 0 where none: the parts the baseline store records per
    minute."""
    parts_key: PartsKey = (metric.name, key, dims)
    unseen = [frame for _, frame in chosen if parts_key not in _groupings(frame)]
    if unseen:
        _remember(unseen, metric, dims, key, parts_key)
    pieces = [(minute, _groupings(frame)[parts_key]) for minute, frame in chosen]
    present = [(minute, piece) for minute, piece in pieces if piece is not None]
    minutes = sorted({minute for minute, _ in chosen})
    if present:
        stacked = pd.concat([piece for _, piece in present], keys=[minute for minute, _ in present], names=["minute"])
        scope_levels = list(range(1, stacked.index.nlevels))
        grouped = stacked.groupby(level=[*scope_levels, 0], sort=False, dropna=False).sum()
    else:
        grouped = _grouped(pd.DataFrame(columns=[*dims, "kind", "minute"]), metric, dims, key)
    num, den = (
        grouped[part].unstack(fill_value=0.0).reindex(columns=minutes, fill_value=0.0) for part in ("num", "den")
    )
    return num, den


def _groupings(frame: pd.DataFrame) -> dict[PartsKey, pd.DataFrame | None]:
    """The frame's remembered groupings, a new empty record for a frame not seen before."""
    entry = _REMEMBERED.get(id(frame))
    if entry is None or entry[0]() is not frame:  # not seen, or an id reused after its frame was freed
        entry = (weakref.ref(frame, _forget(id(frame))), {})
        _REMEMBERED[id(frame)] = entry
    return entry[1]


def _remember(
    frames: list[pd.DataFrame], metric: Metric, dims: tuple[str, ...], key: str | None, parts_key: PartsKey
) -> None:
    """Group the frames' parts in one pass (their position stands in the ``minute`` column) and
    keep each frame's share beside it. Only the columns the metric reads are copied."""
    wanted = list(dict.fromkeys((*DIMENSIONS, *metric.reads)))
    rows = pd.concat(
        [frame[[c for c in wanted if c in frame]].assign(minute=n) for n, frame in enumerate(frames)],
        ignore_index=True,
    )
    grouped = _grouped(rows, metric, dims, key)
    positions = grouped.index.get_level_values(-1)
    for n, frame in enumerate(frames):
        share = grouped[positions == n]
        _groupings(frame)[parts_key] = share.droplevel(-1) if len(share) else None


def _forget(frame_id: int) -> Callable[[weakref.ref[pd.DataFrame]], None]:
    def forget(reference: weakref.ref[pd.DataFrame]) -> None:
        entry = _REMEMBERED.get(frame_id)
        if entry is not None and entry[0] is reference:
            del _REMEMBERED[frame_id]

    return forget


def _grouped(rows: pd.DataFrame, metric: Metric, dims: tuple[str, ...], key: str | None) -> pd.DataFrame:
    """num and den summed per scope of ``dims`` and ``minute`` (the last index level)."""
    if metric.kinds is not None and "kind" in rows:
        rows = rows[rows["kind"].isin(metric.kinds)]
    rows = keyed_rows(rows, metric)
    keys = [rows[d] for d in dims] or [pd.Series("", index=rows.index, name="_all")]
    return metric.parts(rows, key).groupby([*keys, rows["minute"]], sort=False, dropna=False)[["num", "den"]].sum()
