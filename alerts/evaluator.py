"""Evaluates every rule on each closed minute and tracks the alert lifecycle (like Prometheus).

Per (rule, scope): inactive → pending when the condition first holds → firing once it has
held for ``for`` → resolved once it has been false for ``keep_firing_for`` (hysteresis: a
flapping metric does not page twice). While firing, "the condition" leaves out its significance
gates (``sustains``, :func:`spanline.alerts.conditions.evaluate_clause`): they decide when a page
starts, the change itself how long it lasts. Time is event time: ``now`` = the end of the evaluated
minute, so replayed or accelerated traffic is judged exactly like live traffic.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import pandas as pd

from spanline.alerts.baselines import SLOT_DEN, SLOT_NUM, BaselineStore, Family, KeyHistory, merged, quantile
from spanline.alerts.conditions import evaluate_clause, family_of
from spanline.alerts.diagnosis import diagnose
from spanline.alerts.events import AlertEvent, dedup_key
from spanline.alerts.metrics import keyed_rows
from spanline.alerts.rules import SEVERITY_ORDER, SPEND_WINDOWS_LIMIT, BurnRate, Clause, NewKey, Rule
from spanline.alerts.spend_noise import REFERENCE
from spanline.alerts.state import ActiveAlert, AlertKey, SavedState, Scope, read_state, write_state
from spanline.contracts import Contract

if TYPE_CHECKING:
    from _typeshed import ConvertibleToFloat

log = logging.getLogger(__name__)
MINUTE = timedelta(minutes=1)
#: Minute frames kept for diagnoses (the incident window and the hour before it) and for the
#: noise references of the significance tests (the spend rules' longest window, a gap of one
#: window and the reference before it: alerts/spend_noise.py).
DIAGNOSIS_MINUTES = (SPEND_WINDOWS_LIMIT + REFERENCE) // MINUTE
#: Sketch columns no diagnosis reads: not kept in the frame ring (they dominate its memory).
UNDIAGNOSED = ("duration_ms_sketch", "tpot_ms_sketch")


class MinuteFrame(Protocol):
    """What the evaluator needs of ``spanline.windows.merger.MinuteFigures`` (read only)."""

    @property
    def minute(self) -> datetime: ...

    @property
    def frame(self) -> pd.DataFrame: ...


@dataclass
class Evaluator:
    """Rules + contracts + baselines + lifecycle; :meth:`evaluate` once per merged minute."""

    rules: list[Rule]
    contracts: list[Contract]
    store: BaselineStore = field(default_factory=BaselineStore)
    keys: dict[Family, KeyHistory] = field(default_factory=dict)
    active: dict[AlertKey, ActiveAlert] = field(default_factory=dict)
    frames: deque[tuple[datetime, pd.DataFrame]] = field(default_factory=lambda: deque(maxlen=DIAGNOSIS_MINUTES))
    last_minute: datetime | None = None
    #: State changes paged but not yet in the ``alerts`` table (alerts/worker.py writes them);
    #: saved with the state, so a worker stopped between a page and its history row writes the
    #: row after its restart.
    unrecorded: list[AlertEvent] = field(default_factory=list)
    #: (is a pipeline rule, clause) of each family the rules read.
    _family_cache: dict[Family, tuple[bool, Clause]] = field(default_factory=dict, init=False, repr=False)

    # --- per minute
    def evaluate(self, figures: MinuteFrame, pipeline: pd.DataFrame | None = None) -> list[AlertEvent]:
        """Record the minute, evaluate every rule; returns the state changes, firing first.

        ``pipeline`` is the worker's one-row figures for the minute (spans_in, dead_letters,
        lag_s, windows) that the pipeline self-health rules read; None skips those rules.
        A minute at or before the last evaluated one is ignored (a replayed record).
        """
        minute = figures.minute
        if self.last_minute is not None and minute <= self.last_minute:
            log.info("minute %s already evaluated; ignored", minute.isoformat())
            return []
        now = minute + MINUTE
        self._record(minute, figures.frame, pipeline)
        self.remember(minute, figures.frame)
        events: list[AlertEvent] = []
        for rule in self.rules:
            if rule.pipeline and pipeline is None:
                continue
            events.extend(self._step(rule, now))
        self.last_minute = minute
        return sorted(events, key=lambda e: e.state != "firing")

    def remember(self, minute: datetime, frame: pd.DataFrame) -> None:
        """Keep a minute for diagnoses only (the reference period a page compares with); the
        bootstrap fills it with the minutes before a fresh start from ``spans_minute``."""
        self.frames.append((minute, frame.drop(columns=list(UNDIAGNOSED), errors="ignore")))

    def _families(self) -> dict[Family, tuple[bool, Clause]]:
        """Every (metric, key, scope) series the rules read: recorded once per minute, shared by rules."""
        if not self._family_cache:
            for rule in self.rules:
                for clause in rule.clauses:
                    self._family_cache[family_of(clause, tuple(rule.scope))] = (rule.pipeline, clause)
        return self._family_cache

    def _record(self, minute: datetime, frame: pd.DataFrame, pipeline: pd.DataFrame | None) -> None:
        by_kind = _KindSplit()
        #: (source, kinds, dims) -> the rows and the families reading them
        shared: dict[
            tuple[int, tuple[str, ...] | None, tuple[str, ...]], tuple[pd.DataFrame, list[tuple[Family, Clause]]]
        ] = {}
        for family, (is_pipeline, clause) in self._families().items():
            source = pipeline if is_pipeline else frame
            if source is None:
                continue
            metric = clause.spec
            if isinstance(clause.condition, NewKey):
                rows = keyed_rows(by_kind(source, metric.kinds), metric)
                history = self.keys.setdefault(family, KeyHistory())
                history.observe(
                    family.dims, minute, exploded_keys(rows, family.dims, metric.map_column), clause.condition.lookback
                )
            elif metric.per_key is not None:  # rows of its own (exploded by its maps' keys)
                self._record_together(minute, keyed_rows(by_kind(source, metric.kinds), metric), [(family, clause)])
            else:
                rows = by_kind(source, metric.kinds)
                shared.setdefault((id(source), metric.kinds, family.dims), (rows, []))[1].append((family, clause))
        for rows, families in shared.values():
            self._record_together(minute, rows, families)

    def _record_together(self, minute: datetime, rows: pd.DataFrame, families: list[tuple[Family, Clause]]) -> None:
        """One minute's per-scope parts of families reading the same rows by the same dims, grouped
        once for all of them: the sums a groupby of each family's parts by its dims gives (the same
        rows in the same order per scope), without a grouping per family."""
        families = [(f, c) for f, c in families if not f.percentile or c.spec.sketch in rows]
        if not families:
            return  # a bootstrapped minute from spans_minute: its sketches are not loaded
        dims = list(families[0][0].dims)
        codes, first = scope_codes(rows, dims)
        columns: dict[str, pd.Series] = {}
        for number, (_, clause) in enumerate(families):
            parts = clause.spec.parts(rows, clause.key)
            columns[f"num{number}"], columns[f"den{number}"] = parts["num"], parts["den"]
        sums = pd.DataFrame(columns, index=rows.index).groupby(codes, sort=False).sum()
        scopes = {d: rows[d].array[first] for d in dims}
        for number, (family, clause) in enumerate(families):
            per_scope = {**scopes, "num": sums[f"num{number}"].to_numpy(), "den": sums[f"den{number}"].to_numpy()}
            if clause.spec.slot_numerator:  # burn-rate tiers may judge its 10-second slots
                per_scope |= _slot_sums(clause, rows, codes)
            sketch = clause.spec.sketch
            if family.percentile and sketch is not None:
                per_scope["sketch"] = rows[sketch].groupby(codes, sort=False).agg(merged).to_numpy()
            self.store.record(family, minute, pd.DataFrame(per_scope))

    def learn_hours(self, hours: pd.DataFrame) -> int:
        """Closed hours of history (rollup-shaped: grain columns, ``hour``, counters, maps and,
        when present, sketches) into the baselines of every span family; returns rows recorded.

        Percentile families need the sketch columns; without them (ClickHouse rollups) they are
        skipped here and loaded from the rollup's own quantiles (bootstrap.py).
        """
        recorded = 0
        split = _KindSplit()
        for family, (is_pipeline, clause) in self._families().items():
            if is_pipeline or hours.empty:
                continue
            metric = clause.spec
            rows = keyed_rows(split(hours, metric.kinds), metric)
            if isinstance(clause.condition, NewKey):
                history = self.keys.setdefault(family, KeyHistory())
                for hour, frame in rows.groupby("hour", sort=True):
                    history.observe(
                        family.dims,
                        _as_datetime(hour),
                        exploded_keys(frame, family.dims, metric.map_column),
                        clause.condition.lookback,
                    )
                continue
            if family.percentile and metric.sketch not in rows:
                continue
            by = [*family.dims, "hour"]
            keyed = pd.concat([rows[by], metric.parts(rows, clause.key)], axis=1)
            grouped = keyed.groupby(by, sort=False, dropna=False)
            table = grouped[["num", "den"]].sum().reset_index()
            if family.percentile:
                sketches = rows.groupby(by, sort=False, dropna=False)[metric.sketch].agg(merged)
                table["value"] = [
                    quantile(s, metric.quantile_level) for s in sketches.reindex(pd.MultiIndex.from_frame(table[by]))
                ]
            else:
                table["value"] = np.nan
            table["hour"] = [_as_datetime(h) for h in table["hour"]]
            self.store.record_hours(family, table)
            recorded += len(table)
        return recorded

    def _step(self, rule: Rule, now: datetime) -> list[AlertEvent]:
        dims = tuple(rule.scope)
        main = evaluate_clause(rule, dims, self.store, self._keys(rule, rule), self.contracts, now, self.frames)
        firing = self._firing(rule, main.index)
        holds = _holds(main, firing) & (main["volume"] >= rule.min_traffic)
        for clause in rule.also if holds.any() else ():
            extra = evaluate_clause(
                clause, dims, self.store, self._keys(rule, clause), self.contracts, now, self.frames
            )
            holds &= _holds(extra, firing).reindex(main.index, fill_value=False)
        true_scopes = {_scope_tuple(index, dims): index for index in main.index[holds.to_numpy(dtype=bool)]}
        events: list[AlertEvent] = []
        for scope, index in true_scopes.items():
            key = (rule.name, scope)
            active = self.active.get(key)
            if active is None:
                active = self.active[key] = ActiveAlert("pending", since=now - MINUTE, last_true=now)
            active.last_true = now
            row = main.loc[index]
            severity = row["severity"] if isinstance(row["severity"], str) else rule.severity
            if active.state == "pending" and now - active.since >= max(rule.for_, MINUTE):
                active.state = "firing"
                active.event = self._fire(rule, scope, row, active.since, now, severity)
                events.append(active.event)
            elif active.event is not None and SEVERITY_ORDER[severity] < SEVERITY_ORDER[active.event.severity]:
                # a worse burn-rate tier now holds: the same incident (dedup key), escalated
                active.event = self._fire(rule, scope, row, active.since, now, severity)
                events.append(active.event)
        for key in [k for k in self.active if k[0] == rule.name and k[1] not in true_scopes]:
            active = self.active[key]
            if active.state == "pending":
                del self.active[key]
            elif now - active.last_true >= rule.keep_firing_for:
                del self.active[key]
                events.append(self._resolve(rule, active, main, now))
        return events

    def _firing(self, rule: Rule, index: pd.Index) -> pd.Series:
        """Per scope of ``index``: whether the rule fires there now."""
        scopes = [
            _index_of(scope) for (name, scope), a in self.active.items() if name == rule.name and a.state == "firing"
        ]
        return pd.Series(index.isin(scopes) if scopes else False, index=index, dtype=bool)

    def _keys(self, rule: Rule, clause: Clause) -> KeyHistory:
        return self.keys.get(family_of(clause, tuple(rule.scope)), KeyHistory())

    def _fire(
        self, rule: Rule, scope: Scope, row: pd.Series, since: datetime, now: datetime, severity: str
    ) -> AlertEvent:
        scope_map = dict(zip(rule.scope, (str(v) for v in scope), strict=False))
        figures = {name: _number(row[name]) for name in ("value", "threshold", "baseline", "ratio")}
        tiers = rule.condition.tiers if isinstance(rule.condition, BurnRate) else []
        window = next((tier.long for tier in tiers if tier.severity == severity), None)
        branch, diagnosis = diagnose(rule, scope_map, list(self.frames), now, figures, self, window)
        return AlertEvent(
            rule=rule.name,
            severity=severity,
            state="firing",
            at=now,
            started_at=since,
            dedup_key=dedup_key(rule.name, scope_map),
            scope=scope_map,
            group={d: scope_map[d] for d in rule.grouping},
            value=figures["value"],
            threshold=figures["threshold"],
            summary=_summary(rule, scope_map, figures),
            description=rule.description,
            runbook=rule.runbook,
            runbook_branch=branch,
            diagnosis=diagnosis,
            excess=_excess(rule, figures["value"], figures["threshold"]),
        )

    def _resolve(self, rule: Rule, active: ActiveAlert, main: pd.DataFrame, now: datetime) -> AlertEvent:
        fired = active.event
        assert fired is not None
        index = _index_of(tuple(fired.scope.values()))
        value = _number(main["value"].get(index, np.nan)) if index in main.index else float("nan")
        return AlertEvent(
            rule=fired.rule,
            severity=fired.severity,
            state="resolved",
            at=now,
            started_at=fired.started_at,
            dedup_key=fired.dedup_key,
            scope=fired.scope,
            group=fired.group,
            value=value,
            threshold=fired.threshold,
            summary=f"resolved: {fired.summary}",
            description=fired.description,
            runbook=fired.runbook,
            runbook_branch=fired.runbook_branch,
            diagnosis=fired.diagnosis,
            excess=fired.excess,
        )

    def adopt(self, incidents: list[dict[str, Any]]) -> list[AlertEvent]:
        """Take over alerts recorded as firing (history rows) by a worker whose state is gone;
        returns their events. Rules that no longer exist are skipped."""
        rules = {rule.name: rule for rule in self.rules}
        adopted = []
        for row in incidents:
            rule = rules.get(str(row["rule"]))
            scope = {str(k): str(v) for k, v in dict(row["scope"]).items()}
            if rule is None or set(scope) != set(rule.scope):
                continue
            at = row["at"] if row["at"].tzinfo else row["at"].replace(tzinfo=UTC)
            event = AlertEvent(
                rule=rule.name,
                severity=str(row.get("severity") or rule.severity),
                state="firing",
                at=at,
                started_at=at,
                dedup_key=dedup_key(rule.name, scope),
                scope=scope,
                group={d: scope[d] for d in rule.grouping},
                value=float(row["value"]),
                threshold=float(row["threshold"]),
                summary=str(row["summary"]),
                description=rule.description,
                runbook=rule.runbook,
                runbook_branch=str(row["runbook_branch"]),
                diagnosis=json.loads(str(row["diagnosis"]) or "{}"),
                example_trace_ids=tuple(str(t) for t in row.get("example_trace_ids") or ()),
            )
            key = (rule.name, tuple(scope[d] for d in rule.scope))
            self.active[key] = ActiveAlert("firing", since=at, last_true=at, event=event)
            adopted.append(event)
        return adopted

    def firing(self) -> list[AlertEvent]:
        """The events of every alert currently firing (for a dispatcher after a restart)."""
        return [a.event for a in self.active.values() if a.state == "firing" and a.event is not None]

    # --- persistence (baselines and lifecycle survive restarts: no lost or repeated pages)
    def save(self, path: Path) -> None:
        """Baselines, key history and alert states (not the diagnosis frames: they are tens of MB
        and refill within the hour; until then diagnoses compare with what is there)."""
        write_state(path, SavedState(self.store, self.keys, self.active, self.last_minute, self.unrecorded))

    def restore(self, path: Path) -> bool:
        """Load a saved state into this evaluator; False when there is none or it cannot be used
        (then it is logged and set aside by :func:`~spanline.alerts.state.read_state`)."""
        saved = read_state(path)
        if saved is None:
            return False
        self.store, self.keys, self.last_minute = saved.store, saved.keys, saved.last_minute
        self.unrecorded = saved.unrecorded
        names = {rule.name for rule in self.rules}
        self.active = {key: value for key, value in saved.active.items() if key[0] in names}  # rules removed since
        return True


class _KindSplit:
    """The rows of a frame for a set of span kinds, split once per minute and reused."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, tuple[str, ...] | None], pd.DataFrame] = {}

    def __call__(self, frame: pd.DataFrame, kinds: tuple[str, ...] | None) -> pd.DataFrame:
        key = (id(frame), kinds)
        if key not in self._cache:
            self._cache[key] = frame if kinds is None or frame.empty else frame[frame["kind"].isin(kinds)]
        return self._cache[key]


def _slot_sums(clause: Clause, rows: pd.DataFrame, codes: np.ndarray) -> dict[str, np.ndarray]:
    """Per scope (``codes``, in the order of the scopes' sums) and slot: the metric's parts as the
    store's SLOT_NUM and SLOT_DEN columns, NaN for a minute without slot maps."""
    num, den = clause.spec.slot_parts(rows)
    slots = pd.DataFrame(np.hstack([num, den]), columns=[*SLOT_NUM, *SLOT_DEN])
    sums = slots.groupby(codes, sort=False).sum(min_count=1)
    return {name: sums[name].to_numpy() for name in (*SLOT_NUM, *SLOT_DEN)}


def scope_codes(rows: pd.DataFrame, dims: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the number of its scope (its values of ``dims``) in order of first appearance, as
    ``groupby(dims, sort=False, dropna=False)`` orders its groups; and each scope's first row."""
    if dims:
        codes = rows.groupby(dims, sort=False, dropna=False).ngroup().to_numpy()
    else:
        codes = np.zeros(len(rows), dtype=np.int64)
    first = np.unique(codes, return_index=True)[1]
    return codes, first


def exploded_keys(rows: pd.DataFrame, dims: tuple[str, ...], column: str | None) -> pd.DataFrame:
    """dims + key + calls from a map column (one output row per map entry)."""
    if column is None or column not in rows or rows.empty:
        return pd.DataFrame(columns=[*dims, "key", "calls"])
    entries = rows[column].map(lambda m: list((m or {}).items()))
    exploded = rows[list(dims)].assign(entry=entries).explode("entry").dropna(subset=["entry"])
    if exploded.empty:
        return pd.DataFrame(columns=[*dims, "key", "calls"])
    exploded["key"] = exploded["entry"].str[0]
    exploded["calls"] = exploded["entry"].str[1].astype("float64")
    return exploded.drop(columns="entry")


def _as_datetime(value: object) -> datetime:
    """An ``hour`` label of a grouped frame (a pandas Timestamp or already a datetime)."""
    if isinstance(value, pd.Timestamp):
        stamp: datetime = value.to_pydatetime()
        return stamp
    return cast(datetime, value)


def _holds(result: pd.DataFrame, firing: pd.Series) -> pd.Series:
    """A clause holds where it starts a page, or, where the rule already fires, where the change
    it measures still holds (significance starts a page; it does not end one)."""
    return result["holds"] | (result["sustains"] & firing.reindex(result.index, fill_value=False))


def _scope_tuple(index: object, dims: tuple[str, ...]) -> Scope:
    if not dims:
        return ()
    return tuple(index) if isinstance(index, tuple) else (index,)


def _index_of(scope: Scope) -> object:
    if not scope:
        return ""
    return scope if len(scope) > 1 else scope[0]


def _number(value: ConvertibleToFloat | None) -> float:
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _excess(rule: Rule, value: float, threshold: float) -> float:
    """How many times past its threshold a value is, in the direction the rule watches."""
    condition = rule.condition
    falling = getattr(condition, "op", ">") in ("<", "<=") or getattr(condition, "points", 1) < 0
    low, high = (value, threshold) if falling else (threshold, value)
    ratio = high / low if low > 0 else 0.0
    return ratio if np.isfinite(ratio) else 0.0


def _summary(rule: Rule, scope: dict[str, str], figures: dict[str, float]) -> str:
    where = ", ".join(f"{k}={v}" for k, v in scope.items()) or "pipeline"
    try:
        text = rule.summary.format(**figures)
    except (ValueError, KeyError):
        text = f"{rule.metric} = {figures['value']:.4g}"
    return f"{rule.name} [{where}]: {text}"
