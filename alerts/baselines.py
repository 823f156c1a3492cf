"""Per-scope history of every watched metric: recent minutes and closed hours (the baselines).

A *series family* is one (metric, key, scope dimensions) combination; its rows are the scopes.
Minutes are kept for ``minute_retention`` (windows up to that length read them directly);
each completed hour is folded into an hourly row, kept for ``hour_retention`` (8 days: the
7-day baselines plus today). Parts are sums (num/den), so any window is a sum of rows.
Percentile metrics keep a merged DDSketch per minute and the hour's quantile once folded.

The evaluator saves the store with its alert states (:mod:`spanline.alerts.state`) so baselines
survive restarts; on a fresh start, or when that file cannot be used, it is bootstrapped from
the ClickHouse rollups (see :mod:`spanline.alerts.bootstrap`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from ddsketch import DDSketch

from spanline.alerts.metrics import METRICS
from spanline.alerts.rules import Baseline
from spanline.windows.aggregate import SLOTS

HOUR = timedelta(hours=1)
#: Minute columns of families judged per 10-second slot (burn-rate ``sustained``): num and den
#: per slot. Hours do not keep them (no window reads slots past the minute retention).
SLOT_NUM: tuple[str, ...] = tuple(f"num_slot{slot}" for slot in range(SLOTS))
SLOT_DEN: tuple[str, ...] = tuple(f"den_slot{slot}" for slot in range(SLOTS))
#: DDSketch relative accuracy, as in the stream windows and the ClickHouse rollups.
SKETCH_ACCURACY = 0.01
#: A total (spend) above this many times a scope's usual level is an incident, not its usual:
#: left out of its baselines' hours (:func:`_incident_hours`) and noise reference minutes
#: (alerts/spend_noise.py).
INCIDENT_FACTOR = 3.0
#: Trailing hours whose median is a spend baseline's usual level, at least (see ``_baseline``).
CONTEXT_HOURS = 6


@dataclass(frozen=True)
class Family:
    """One series family: a metric (and map key) per scope."""

    metric: str
    key: str | None
    dims: tuple[str, ...]

    @property
    def percentile(self) -> bool:
        return METRICS[self.metric].kind == "percentile"


def merged(sketches: pd.Series | list[DDSketch | None]) -> DDSketch | None:
    """One sketch from many (None and empty ones skipped); None when nothing was recorded."""
    result = DDSketch(SKETCH_ACCURACY)
    for sketch in sketches:
        if sketch is not None and sketch.count:
            result.merge(sketch)
    return result if result.count else None


def quantile(sketch: DDSketch | None, q: float) -> float:
    value = None if sketch is None else sketch.get_quantile_value(q)
    return float("nan") if value is None else float(value)


@dataclass
class Series:
    """One family's minute rows and hourly rows (minutes before ``folded_until`` are in the hours).

    ``observed_from`` is when the evaluator started watching (its first minute, or the first hour
    of bootstrapped history): time before it is unknown, not zero, so totals are averaged over
    observed time only (a worker starting at 10:37 saw 23 minutes of the 10:00 hour).
    """

    minutes: pd.DataFrame
    hours: pd.DataFrame
    folded_until: datetime | None = None
    observed_from: datetime | None = None


@dataclass
class BaselineStore:
    """Minute and hour parts of every family; see the module docstring.

    Closed hours are folded (and old minutes trimmed) once per hour, when the first minute of a
    new hour arrives, so minutes hold up to ``minute_retention`` + 1 h between folds.
    """

    minute_retention: timedelta = timedelta(minutes=120)
    hour_retention: timedelta = timedelta(days=8)
    series: dict[Family, Series] = field(default_factory=dict)
    #: Baselines read folded hours only, so they change when an hour is folded: cached per current
    #: hour and fold (not saved: a restored store rebuilds the same values).
    #: Keyed by (family, baseline spec, current hour, folded_until).
    _baselines: dict[tuple[Family, Baseline, datetime, datetime | None], pd.DataFrame] = field(default_factory=dict)

    # --- writing
    def record(self, family: Family, minute: datetime, parts: pd.DataFrame) -> None:
        """Add one minute's per-scope parts (dims + num + den [+ sketch]); folds closed hours."""
        series = self._get(family)
        if series.observed_from is None or minute < series.observed_from:
            series.observed_from = minute
        rows = parts.assign(minute=minute)
        series.minutes = pd.concat([series.minutes, rows], ignore_index=True) if len(series.minutes) else rows
        if series.folded_until is None or minute >= series.folded_until + HOUR:  # an hour closed
            self._fold(family, series, minute)
            series.minutes = series.minutes[series.minutes["minute"] > minute - self.minute_retention - HOUR]

    def record_hours(self, family: Family, hours: pd.DataFrame) -> None:
        """Closed hours from history (bootstrap): dims + hour + num + den + value."""
        self._baselines.clear()
        series = self._get(family)
        series.hours = pd.concat([series.hours, hours], ignore_index=True) if len(series.hours) else hours
        if len(hours):
            first = hours["hour"].min()
            series.observed_from = first if series.observed_from is None else min(series.observed_from, first)
        last = hours["hour"].max() + HOUR if len(hours) else None
        if last is not None and (series.folded_until is None or last > series.folded_until):
            series.folded_until = last

    def _get(self, family: Family) -> Series:
        if family not in self.series:
            columns = [*family.dims, "num", "den"]
            self.series[family] = Series(
                minutes=pd.DataFrame(columns=[*columns, "minute"]),
                hours=pd.DataFrame(columns=[*columns, "hour", "value"]),
            )
        return self.series[family]

    def _fold(self, family: Family, series: Series, minute: datetime) -> None:
        """Turn every completed hour of minutes into hourly rows (once per hour)."""
        current_hour = minute.replace(minute=0, second=0, microsecond=0)
        start = series.folded_until
        minutes = series.minutes
        closed = minutes[(minutes["minute"] < current_hour) & ((minutes["minute"] >= start) if start else True)]
        if len(closed):
            closed = closed.assign(hour=closed["minute"].map(lambda m: m.replace(minute=0)))
            keys = [*family.dims, "hour"]
            hours = closed.groupby(keys, sort=False, dropna=False)[["num", "den"]].sum().reset_index()
            if family.percentile:
                sketches = closed.groupby(keys, sort=False, dropna=False)["sketch"].agg(merged)
                metric = METRICS[family.metric]
                hours["value"] = [
                    quantile(s, metric.quantile_level) for s in sketches.reindex(pd.MultiIndex.from_frame(hours[keys]))
                ]
            else:
                hours["value"] = np.nan
            series.hours = pd.concat([series.hours, hours], ignore_index=True) if len(series.hours) else hours
        if start is None or current_hour > start:
            series.folded_until = current_hour
        series.hours = series.hours[series.hours["hour"] >= minute - self.hour_retention]

    # --- reading
    def window(self, family: Family, end: datetime, length: timedelta) -> pd.DataFrame:
        """Per scope: num, den (and the merged ``sketch`` for percentiles) over [end − length, end).

        Windows longer than the minute retention read folded hours before ``folded_until`` and
        minutes after it; an hour only partly inside the window counts by the share of its minutes
        that are (the hour's sums are spread evenly over it), so "the previous 24 hours" is 24 hours.
        """
        series = self._get(family)
        start = end - length
        minutes = _minutes_in(series.minutes, start, end)
        if length > self.minute_retention - timedelta(minutes=1) and series.folded_until is not None:
            boundary = min(series.folded_until, end)
            minutes = _minutes_in(minutes, boundary, end)
            hours = _overlapping(series.hours, start, boundary)
            parts = pd.concat([hours[[*family.dims, "num", "den"]], minutes[[*family.dims, "num", "den"]]])
        else:
            parts = minutes
        if not family.dims:
            parts = parts.assign(_all="")
        dims = list(family.dims) or ["_all"]
        if parts.empty:
            return pd.DataFrame(columns=[*family.dims, "num", "den", "sketch"]).set_index(list(family.dims) or None)
        sums = parts.groupby(dims, sort=False, dropna=False)[["num", "den"]].sum()
        if family.percentile:
            sums["sketch"] = minutes.assign(_all="").groupby(dims, sort=False, dropna=False)["sketch"].agg(merged)
        return sums

    def slot_window(self, family: Family, end: datetime, length: timedelta) -> pd.DataFrame:
        """The minute rows in [end − length, end): dims, SLOT_NUM and SLOT_DEN. A minute recorded
        without slot figures (a bootstrapped minute, a store saved before them) has its own num and
        den in every slot: it counts as a whole minute at its own rate, as before slots existed."""
        minutes = _minutes_in(self._get(family).minutes, start=end - length, end=end)
        num = _columns(minutes, SLOT_NUM)
        den = _columns(minutes, SLOT_DEN)
        without_slots = np.isnan(num).any(axis=1) | np.isnan(den).any(axis=1)
        num[without_slots] = minutes["num"].to_numpy(dtype="float64")[without_slots, None]
        den[without_slots] = minutes["den"].to_numpy(dtype="float64")[without_slots, None]
        slots = pd.DataFrame(np.hstack([num, den]), columns=[*SLOT_NUM, *SLOT_DEN], index=minutes.index)
        return pd.concat([minutes[list(family.dims)], slots], axis=1)

    def baseline(self, family: Family, spec: Baseline, now: datetime) -> pd.DataFrame:
        """Per scope over closed hours: num, den, hours (with traffic), mean hourly ``value`` and
        ``observed_hours`` (the chosen hours' observed share). For totals, a scope's incident hours
        are left out of num, den and its observed hours (:func:`_incident_hours`).

        ``trailing``: every hour in [now − over, start of this hour); ``same_hour``: the hour of
        day of ``now`` on each previous day within ``over``. Scopes with fewer than ``min_hours``
        (hours with traffic; observed hours for totals, where a quiet hour is a real zero) use
        ``fallback`` (when given), else they have no baseline.
        """
        current_hour = now.replace(minute=0, second=0, microsecond=0)
        cache_key = (family, spec, current_hour, self._get(family).folded_until)
        if cache_key not in self._baselines:
            if len(self._baselines) > 4 * max(len(self.series), 1):
                self._baselines = {k: v for k, v in self._baselines.items() if k[2] == current_hour}
            self._baselines[cache_key] = self._baseline(family, spec, now, current_hour)
        return self._baselines[cache_key]

    def _baseline(self, family: Family, spec: Baseline, now: datetime, current_hour: datetime) -> pd.DataFrame:
        series = self._get(family)
        hours = series.hours
        if spec.kind == "trailing":
            first = now - spec.over
            first_hour = first.replace(minute=0, second=0, microsecond=0)
            if first_hour < first:
                first_hour += HOUR
            wanted = [first_hour + n * HOUR for n in range(int((current_hour - first_hour) / HOUR))]
        else:
            days = int(spec.over / timedelta(days=1))
            wanted = [current_hour - timedelta(days=d) for d in range(1, days + 1)]
        # an incident is told from the usual level by the median hour: of the same hours of previous
        # days, or of at least CONTEXT_HOURS trailing hours (two would not tell one incident apart)
        context = wanted if spec.kind == "same_hour" else _trailing(current_hour, max(len(wanted), CONTEXT_HOURS))
        dims = list(family.dims) or ["_all"]
        rows = hours[hours["hour"].isin(set(context)) & (hours["den"] > 0)]
        rows = rows.assign(_all="") if not family.dims else rows
        shares = pd.Series(
            [_observed_share(hour, series.observed_from, series.folded_until) for hour in context],
            index=pd.Index(context, name="hour"),
            dtype="float64",
        )
        total = METRICS[family.metric].kind == "total"
        incidents = _incident_hours(rows, dims, shares) if total else None
        chosen = rows[rows["hour"].isin(set(wanted))]
        left_out = pd.Series(dtype="float64")
        if incidents is not None:
            incidents = incidents[incidents.index.get_level_values("hour").isin(wanted)]
            chosen = chosen[~pd.MultiIndex.from_frame(chosen[[*dims, "hour"]]).isin(incidents.index)]
            left_out = incidents.groupby(level=dims, sort=False, dropna=False).sum()
        result = chosen.groupby(dims, sort=False, dropna=False).agg(
            num=("num", "sum"), den=("den", "sum"), hours=("hour", "nunique"), value=("value", "mean")
        )
        watched = shares.reindex(wanted).sum()
        # the usual level is spend per usual hour: an incident's watched time goes with it
        result["observed_hours"] = watched - left_out.reindex(result.index, fill_value=0.0)
        enough = pd.Series(watched, index=result.index) if total else result["hours"]
        result = result[enough >= spec.min_hours]
        if spec.fallback is not None:
            fallback = self.baseline(family, spec.fallback, now)
            result = pd.concat([result, fallback[~fallback.index.isin(result.index)]])
        return result

    def first_minute(self, family: Family) -> datetime | None:
        """The oldest minute row kept (minutes watched live; bootstrapped hours have none)."""
        minutes = self._get(family).minutes
        return minutes["minute"].min() if len(minutes) else None

    def history_start(self, family: Family) -> datetime | None:
        """When watching this family began; for a store saved without it, its oldest row."""
        series = self._get(family)
        if series.observed_from is not None:
            return series.observed_from
        starts = [
            frame[column].min() for frame, column in ((series.hours, "hour"), (series.minutes, "minute")) if len(frame)
        ]
        return min(starts) if starts else None


def _columns(frame: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    """The named float columns as a rows × names array (NaN where the frame lacks a column)."""
    return np.column_stack(
        [frame[name].to_numpy(dtype="float64") if name in frame else np.full(len(frame), np.nan) for name in names]
    )


def _minutes_in(minutes: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """The minute rows in [start, end), in their order. Minutes are appended in time order, so this
    is a slice found by binary search (a boolean filter per window cost more than the window's sums);
    rows out of order (never written by this store) are filtered instead."""
    column = minutes["minute"]
    if isinstance(column.dtype, pd.DatetimeTZDtype) and start.tzinfo is not None and end.tzinfo is not None:
        stamps = column.array.asi8
        if bool(np.all(stamps[1:] >= stamps[:-1])):
            first, last = (column.array.searchsorted(pd.Timestamp(t)) for t in (start, end))
            return minutes.iloc[first:last]
    return minutes[(column >= start) & (column < end)]


def _overlapping(hours: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """Hour rows overlapping [start, end), num and den scaled by the share of the hour inside it."""
    rows = hours[(hours["hour"] < end) & (hours["hour"] + HOUR > start)]
    if rows.empty:
        return rows
    inside = rows["hour"].clip(lower=start), (rows["hour"] + HOUR).clip(upper=end)
    share = (inside[1] - inside[0]) / HOUR
    return rows.assign(num=rows["num"] * share, den=rows["den"] * share)


def _trailing(current_hour: datetime, count: int) -> list[datetime]:
    """The ``count`` hours before ``current_hour``, oldest first."""
    return [current_hour - n * HOUR for n in range(count, 0, -1)]


def _observed_share(hour: datetime, observed_from: datetime | None, folded_until: datetime | None) -> float:
    """How much of ``hour`` was watched: all of it after ``observed_from``, the share after it in
    the hour it falls in, nothing before it or after the last folded hour."""
    if observed_from is None or folded_until is None or hour >= folded_until:
        return 0.0
    return min(max((hour + HOUR - observed_from) / HOUR, 0.0), 1.0)


def _incident_hours(rows: pd.DataFrame, dims: list[str], shares: pd.Series) -> pd.Series | None:
    """The watched share of each (scope, hour) of the hour ``rows`` that spent more than
    ``INCIDENT_FACTOR`` x the scope's median hour of ``shares`` (None when there is none).

    A baseline is the usual level: one 6x traffic hour among three trailing hours (or a week's
    same hours) would double it and hide the next incident for hours. Spend is per watched hour
    (``shares``: a partly watched hour counts by its minutes); a watched hour without spend is a
    real 0 in the median. A scope whose median hour spent nothing keeps every hour (its spend is
    sporadic, not an incident)."""
    watched = shares[shares > 0]
    if rows.empty or watched.empty:
        return None
    spend = rows.pivot_table(index=dims, columns="hour", values="num", aggfunc="sum")
    rate = spend.reindex(columns=watched.index).fillna(0.0) / watched.to_numpy()
    usual = np.median(rate.to_numpy(), axis=1, keepdims=True)
    flagged = ((rate > INCIDENT_FACTOR * usual) & (usual > 0)).stack(future_stack=True)
    flagged = flagged[flagged]
    if flagged.empty:
        return None
    return pd.Series(watched.reindex(flagged.index.get_level_values("hour")).to_numpy(), index=flagged.index)


@dataclass
class KeyHistory:
    """When each map key (e.g. a model_response) was first and last seen per scope.

    A key is *new* when it appears for a scope that was already observed for ``settle`` before
    the key (so a fresh start does not call every existing model version new) and it was not
    seen within ``lookback``.
    """

    settle: timedelta = timedelta(hours=1)
    keys: pd.DataFrame | None = None
    #: Scope values (in the family's dims order) -> the first minute the scope was observed.
    scopes: dict[tuple[object, ...], datetime] = field(default_factory=dict)

    def observe(self, dims: tuple[str, ...], minute: datetime, rows: pd.DataFrame, lookback: timedelta) -> None:
        """Record one minute's rows (dims + key + calls)."""
        for scope in rows[list(dims)].drop_duplicates().itertuples(index=False, name=None):
            self.scopes.setdefault(scope, minute)
        rows = rows.groupby([*dims, "key"], sort=False, dropna=False)["calls"].sum().reset_index()
        if self.keys is None or self.keys.empty:
            known = pd.DataFrame(columns=[*dims, "key", "first_seen", "last_seen", "calls"])
        else:
            known = self.keys[self.keys["last_seen"] >= minute - lookback]
        merged_rows = known.merge(rows, on=[*dims, "key"], how="outer", suffixes=("", "_now"), indicator=True)
        fresh = merged_rows["_merge"] == "right_only"
        merged_rows.loc[fresh, "first_seen"] = minute
        merged_rows.loc[fresh, "calls"] = 0
        seen_now = merged_rows["_merge"] != "left_only"
        merged_rows.loc[seen_now, "last_seen"] = minute
        merged_rows["calls"] = merged_rows["calls"].fillna(0) + merged_rows["calls_now"].fillna(0)
        self.keys = merged_rows.drop(columns=["calls_now", "_merge"])

    def new_keys(self, dims: tuple[str, ...], now: datetime, window: timedelta) -> pd.DataFrame:
        """Keys first seen within [now − window, now) on settled scopes: dims + key + calls."""
        if self.keys is None or self.keys.empty:
            return pd.DataFrame(columns=[*dims, "key", "calls", "first_seen"])
        recent = self.keys[self.keys["first_seen"] >= now - window]
        settled = [
            self.scopes.get(scope, now) <= first - self.settle
            for scope, first in zip(
                recent[list(dims)].itertuples(index=False, name=None), recent["first_seen"], strict=False
            )
        ]
        return recent[np.array(settled, dtype=bool)][[*dims, "key", "calls", "first_seen"]]
