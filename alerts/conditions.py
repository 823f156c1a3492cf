"""One clause evaluated for every scope at once: value, threshold, baseline and whether it holds.

Everything is column-wise over the scopes of a series family (pandas), so a rule costs the
same handful of operations whether it watches 3 tenants or 3,000 model × tenant pairs.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from ddsketch import DDSketch
from numpy.typing import ArrayLike

from spanline.alerts.baselines import SLOT_DEN, SLOT_NUM, BaselineStore, Family, KeyHistory, quantile
from spanline.alerts.metrics import Metric
from spanline.alerts.proportion_noise import proportion_dispersion
from spanline.alerts.rules import (
    Baseline,
    BurnRate,
    Clause,
    ContractLimit,
    DayOverDay,
    NewKey,
    PointsChange,
    RateLimitShare,
    RatioToBaseline,
    Threshold,
)
from spanline.alerts.spend_noise import SPREAD_Z, equal_lift, spend_dispersion, spend_z
from spanline.contracts import Contract, contract_limit, rate_limit, stage_budget
from spanline.windows.aggregate import SLOT_SECONDS

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
#: ``severity`` is the holding burn-rate tier's (None: the rule's own severity).
RESULT_COLUMNS = ["value", "threshold", "baseline", "ratio", "volume", "holds", "sustains", "severity"]


def family_of(clause: Clause, dims: tuple[str, ...]) -> Family:
    return Family(clause.metric, clause.key, dims)


def window_length(clause: Clause, now: datetime) -> timedelta:
    """The clause's window; "today" = since UTC midnight of the evaluated minute."""
    if clause.window == "today":
        last_minute = now - timedelta(minutes=1)
        return now - last_minute.replace(hour=0, minute=0, second=0, microsecond=0)
    return clause.window


def current_values(metric: Metric, parts: pd.DataFrame) -> pd.DataFrame:
    """value and volume per scope from window parts (num, den[, sketch])."""
    value, volume = _current_arrays(metric, parts)
    return pd.DataFrame({"value": value, "volume": volume}, index=parts.index)


def baseline_values(metric: Metric, history: pd.DataFrame, window: timedelta) -> pd.Series:
    """The baseline in the metric's own units: ratio of sums, mean hourly quantile, or the
    mean total per observed hour scaled to the clause window (an hour's spend vs the average
    hour; quiet hours count as zero, unobserved time not at all)."""
    if metric.kind == "percentile":
        return history["value"].astype("float64")
    if metric.kind == "total":
        return (history["num"] / history["observed_hours"]) * (window / HOUR)
    return pd.Series(metric.value(history["num"], history["den"]), index=history.index)


def evaluate_clause(
    clause: Clause,
    dims: tuple[str, ...],
    store: BaselineStore,
    keys: KeyHistory,
    contracts: list[Contract],
    now: datetime,
    recent: Iterable[tuple[datetime, pd.DataFrame]] = (),
) -> pd.DataFrame:
    """Per scope: value, threshold, baseline, ratio (value/baseline), volume, holds, sustains.

    ``sustains``: the condition without its significance gates (``min_z`` and the spread of a
    spend rise). The gates decide when a page starts; a firing alert stays firing while the
    change itself holds, so a quiet hour's thin minutes do not resolve an incident that still
    runs and page it again minutes later (:meth:`spanline.alerts.evaluator.Evaluator._step`).

    ``recent``: the evaluator's latest minute frames, which measure how much a scope's spend or
    rate wanders by chance (a clause's ``min_z``: :mod:`spanline.alerts.spend_noise`,
    :mod:`spanline.alerts.proportion_noise`).
    Scopes without data or baseline have NaN figures; comparisons with NaN are false (the
    condition does not hold), so numpy's "invalid value" warnings are expected and silenced.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return _evaluate(clause, dims, store, keys, contracts, now, recent)


def _evaluate(
    clause: Clause,
    dims: tuple[str, ...],
    store: BaselineStore,
    keys: KeyHistory,
    contracts: list[Contract],
    now: datetime,
    recent: Iterable[tuple[datetime, pd.DataFrame]],
) -> pd.DataFrame:
    metric = clause.spec
    family = family_of(clause, dims)
    condition = clause.condition
    length = window_length(clause, now)
    if isinstance(condition, NewKey):
        return _new_keys(keys, dims, now, length)
    if isinstance(condition, BurnRate):
        return _burn_rate(condition, metric, store, family, now)
    parts = store.window(family, now, length)
    index = parts.index
    value, volume = _current_arrays(metric, parts)
    # numpy on the scopes' columns (a DataFrame built once at the end): the figures the same
    # pandas operations give, without their per-call overhead, which dominated the evaluator
    sustains = None  # the same as holds unless a significance gate narrows holds
    if isinstance(condition, Threshold):
        threshold = np.full(len(index), condition.value)
        baseline = np.full(len(index), np.nan)
        holds = COMPARE[condition.op](value, condition.value)
    elif isinstance(condition, (RatioToBaseline, PointsChange)):
        baseline = _baseline(metric, store, family, condition.baseline, now, length).reindex(index).to_numpy()
        if isinstance(condition, RatioToBaseline):
            threshold = baseline * condition.value
            holds = COMPARE[condition.op](value, threshold) & (np.abs(value - baseline) >= condition.min_delta)
        else:
            threshold = baseline + condition.points / 100
            holds = value >= threshold if condition.points > 0 else value <= threshold
        sustains = holds.copy()
        if condition.min_z and metric.kind == "total":  # spend: compound counts x heavy-tailed costs
            if holds.any():  # the reference minutes are read only for scopes that could page
                recent = list(recent)
                usual = pd.Series(baseline, index=index)
                spent = pd.Series(value, index=index)
                rise = _significant_spend(condition, metric, dims, recent, now, length, spent, usual, length, SPREAD_Z)
                long = condition.long_window if isinstance(condition, RatioToBaseline) else None
                if isinstance(condition, RatioToBaseline) and long and not rise[holds].all():  # or lasting
                    long_spent = current_values(metric, store.window(family, now, long))["value"].reindex(index)
                    long_usual = usual * (long / length)  # the baseline is spend per hour x the window's hours
                    long_rise = COMPARE[condition.op](long_spent, long_usual * condition.value).to_numpy()
                    spread = equal_lift(SPREAD_Z, length, long)
                    rise |= long_rise & _significant_spend(
                        condition, metric, dims, recent, now, long, long_spent, long_usual, length, spread
                    )
                holds &= rise
        elif condition.min_z and metric.kind == "percentile":  # a tail quantile: count its exceedances
            if holds.any():  # only scopes that could page are tested (a sketch walk each)
                sketches = parts["sketch"].to_numpy()[holds]
                holds[holds] = exceedance_p(sketches, baseline[holds], metric.quantile_level) <= normal_tail(
                    condition.min_z
                )
        elif condition.min_z and holds.any():  # successes among trials, overdispersed: n/φ trials' worth
            dispersion = proportion_dispersion(recent, metric, dims, clause.key, now - length, length)
            effective = volume / dispersion.reindex(index, fill_value=1.0).to_numpy()
            holds &= significant(value, baseline, effective, condition.min_z)
    elif isinstance(condition, DayOverDay):
        previous_end = now - timedelta(days=1)
        previous = current_values(metric, store.window(family, previous_end, length))
        baseline = previous["value"].reindex(index).to_numpy()
        observed = _observed_before(store.history_start(family), previous_end, length)
        enough = observed >= timedelta(hours=condition.min_hours)
        if metric.kind == "total" and enough:  # unwatched time is unknown, not zero spend
            baseline = baseline * (length / observed)
        threshold = baseline * condition.value
        holds = COMPARE[condition.op](value, threshold) & (baseline > 0) & enough
    elif isinstance(condition, ContractLimit):
        baseline = _contract_limits(index, dims, contracts, condition.field).to_numpy()
        threshold = baseline * condition.factor
        holds = COMPARE[condition.op](value, threshold)
    elif isinstance(condition, RateLimitShare):
        value = value / (length / MINUTE)  # the window's mean per minute
        baseline = _rate_limits(index, dims, contracts, condition.field).to_numpy()
        threshold = baseline * condition.factor
        holds = COMPARE[condition.op](value, threshold)
    else:  # pragma: no cover - the Condition union is exhaustive
        raise TypeError(f"unhandled condition {condition!r}")
    known = ~np.isnan(value) & pd.notna(threshold)
    return pd.DataFrame(
        {
            "value": value,
            "threshold": threshold,
            "baseline": baseline,
            "ratio": value / baseline,
            "volume": volume,
            "holds": np.asarray(holds, dtype=bool) & known,
            "sustains": np.asarray(holds if sustains is None else sustains, dtype=bool) & known,
            "severity": None,
        },
        index=index,
    )


def _significant_spend(
    condition: RatioToBaseline | PointsChange,
    metric: Metric,
    dims: tuple[str, ...],
    recent: list[tuple[datetime, pd.DataFrame]],
    now: datetime,
    window: timedelta,
    value: pd.Series,
    baseline: pd.Series,
    gap: timedelta,
    spread: float,
) -> np.ndarray:
    """Per scope: the spend ``value`` of the window ending ``now`` is ``min_z`` standard errors
    above what was expected (:func:`spanline.alerts.spend_noise.spend_z`; the noise reference ends
    ``gap`` before the window) and, for a rise, lifts the window's minutes as a whole (their rank
    sum ``spread`` standard errors above chance)."""
    reference = spend_dispersion(recent, metric, dims, now - window, window, baseline, gap=gap)
    result = spend_z(value, baseline, reference, window) >= condition.min_z
    if isinstance(condition, RatioToBaseline) and condition.op in (">", ">="):  # lifts the minutes
        result &= reference["spread_z"].reindex(value.index) >= spread
    significant: np.ndarray = result.to_numpy(dtype=bool, copy=True)
    return significant


def _observed_before(covered: datetime | None, end: datetime, length: timedelta) -> timedelta:
    """How much of [end − length, end) was watched (history starts at ``covered``)."""
    if covered is None:
        return timedelta(0)
    return max(end - max(covered, end - length), timedelta(0))


def _current_arrays(metric: Metric, parts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """value and volume per scope (the columns of :func:`current_values`) as arrays."""
    if metric.kind == "percentile":
        value = np.array([quantile(s, metric.quantile_level) for s in parts["sketch"]], dtype="float64")
    else:
        value = metric.value(parts["num"], parts["den"])
    return value, parts["den"].to_numpy(dtype="float64")


def _burn_rate(
    condition: BurnRate, metric: Metric, store: BaselineStore, family: Family, now: datetime
) -> pd.DataFrame:
    """Per scope, the worst tier whose long and short windows both burn the budget at least
    ``burn`` times (and the long one significantly above it); its long-window figures are the
    page's (value = rate, baseline = budget, ratio = burn rate). Scopes where no tier holds report
    the last (slowest) tier's figures. ``volume`` is always the slowest tier's long-window calls:
    the traffic the rule's ``min_traffic`` asks of a scope, so that a fast tier's few minutes of a
    quiet model neither hide its page nor resolve it mid-incident. A tier is judged only
    once the evaluator has watched its whole long window: 3 minutes after a start are not a
    15-minute burn rate (a fresh worker would page high on them, then critical a minute later)."""
    budget = condition.budget
    first = store.first_minute(family)
    result: pd.DataFrame | None = None
    traffic: pd.Series | None = None
    for tier in reversed(condition.tiers):  # slowest first; each worse tier that holds overrides
        covered = first is not None and first <= now - tier.long
        long = current_values(metric, store.window(family, now, tier.long))
        short = current_values(metric, store.window(family, now, tier.short))["value"].reindex(long.index)
        threshold = tier.burn * budget
        value = long["value"].to_numpy()
        holds = (
            covered
            & (value >= threshold)
            & (short.to_numpy() >= threshold)
            & significant(value, budget, long["volume"], condition.min_z)
        )
        if tier.sustained is not None and holds.any():
            seconds = sustained_seconds(store.slot_window(family, now, tier.long), family.dims, threshold)
            holds &= seconds.reindex(long.index, fill_value=0).to_numpy() >= tier.sustained.total_seconds()
        tier_result = long.assign(threshold=threshold, holds=holds, severity=tier.severity)
        if result is None:
            result, traffic = tier_result, long["volume"]
            continue
        if not holds.any() and tier_result.index.equals(result.index):
            continue  # overrides nothing and adds no scope
        result = result.reindex(result.index.union(tier_result.index))
        override = tier_result["holds"].reindex(result.index, fill_value=False).astype(bool)
        result.loc[override] = tier_result.loc[override[override].index]
    assert result is not None and traffic is not None  # tiers has at least one entry (validated)
    result["holds"] = result["holds"].fillna(False).astype(bool)
    result["sustains"] = result["holds"]
    result["volume"] = traffic.reindex(result.index, fill_value=0.0)
    result["baseline"] = budget
    result["ratio"] = result["value"] / budget
    return result[RESULT_COLUMNS]


def sustained_seconds(slots: pd.DataFrame, dims: tuple[str, ...], threshold: float) -> pd.Series:
    """Per scope, the seconds of 10-second slots (rows of :meth:`BaselineStore.slot_window`) whose
    own rate is at least ``threshold`` with at least one failing call in the slot.

    A slot without calls (0 of 0) never counts. With few calls a slot counts on one failure (1 of 3
    is 33 %): a storm counts only in slots that saw a failure of their own, and chance failures of
    quiet slots add seconds only to a tier whose long and short rates burn anyway. A blip of L
    seconds lifts at most ⌈L/10⌉ + 1 slots, so with ``sustained: 60s`` no blip of 40 s or less
    ever pages."""
    num = slots.loc[:, list(SLOT_NUM)].to_numpy(dtype="float64")
    den = slots.loc[:, list(SLOT_DEN)].to_numpy(dtype="float64")
    counted = (num >= 1) & (num >= threshold * den)
    per_minute = slots.loc[:, list(dims)].assign(seconds=counted.sum(axis=1) * float(SLOT_SECONDS))
    if not dims:
        return pd.Series([per_minute["seconds"].sum()], dtype="float64")
    seconds: pd.Series = per_minute.groupby(list(dims), sort=False, dropna=False)["seconds"].sum()
    return seconds


def significant(value: ArrayLike, baseline: ArrayLike, volume: ArrayLike, min_z: float) -> np.ndarray:
    """|value − baseline| ≥ min_z standard errors of the baseline proportion at ``volume`` trials
    (overdispersed trials count as fewer: :mod:`spanline.alerts.proportion_noise`).

    The baseline spans hours, so its own error is small next to the window's: the test is the
    one-sample z-test of a proportion. For means of [0, 1] scores (recall@k) p(1−p) bounds the
    variance, so the test is conservative there.
    """
    values, baselines, volumes = (np.asarray(s, dtype="float64") for s in (value, baseline, volume))
    share = np.clip(baselines, 0.0, 1.0)
    standard_error = np.sqrt(share * (1.0 - share) / np.where(volumes > 0, volumes, np.nan))
    result: np.ndarray = np.abs(values - baselines) >= min_z * standard_error
    return result


def exceedance_p(sketches: Iterable[DDSketch | None], baseline: ArrayLike, level: float) -> np.ndarray:
    """Per scope, the chance of at least as many window samples above the baseline quantile as
    seen, had nothing changed (the sign test of a quantile): each sample then lies above the
    baseline p95 with probability 5 %, so their count is Binomial(n, 0.05). Exact, since a quiet
    scope has a handful of samples, where a normal approximation is far off.

    Tail latency is heavy (long prompts), so two slow calls of a quiet scope can double its p95
    by chance; they cannot make it significant: at 16 samples, 4 above the baseline p95 has a
    chance of 0.7 %, where a latency spike puts nearly all of them above. NaN without samples or
    baseline."""
    baselines = np.asarray(baseline, dtype="float64")
    chance = np.full(len(baselines), np.nan)
    for number, (sketch, value) in enumerate(zip(sketches, baselines, strict=True)):
        if sketch is None or not sketch.count or np.isnan(value):
            continue
        samples = round(sketch.count)
        above = samples - round(_count_at_or_below(sketch, value))
        chance[number] = binomial_tail(samples, above, 1.0 - level)
    return chance


def binomial_tail(n: int, k: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p), summed from k up. Only a tail beyond the mean is small
    enough to matter, and there the terms fall geometrically, so a few dozen terms suffice; at or
    below the mean the tail is at least about one half and is not summed."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if k <= n * p:
        return 1.0
    term = math.exp(
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)
    )
    total = 0.0
    for j in range(k, n + 1):
        total += term
        if term <= total * 1e-12:
            break
        term *= (n - j) / (j + 1) * p / (1.0 - p)
    return min(total, 1.0)


def normal_tail(z: float) -> float:
    """P(Z ≥ z) for a standard normal: the chance a ``min_z`` of standard errors stands for."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _count_at_or_below(sketch: DDSketch, value: float) -> float:
    """The samples at or below ``value`` (to the sketch's accuracy): the highest quantile whose
    value is at most ``value``, found by bisection. DDSketch reads quantile q at rank q × (count − 1),
    and ranks [k − 1, k) are the k-th sample's, so that bound is the count."""
    count = float(sketch.count)
    if quantile(sketch, 0.0) > value:
        return 0.0
    if quantile(sketch, 1.0) <= value:
        return count
    low, high = 0.0, 1.0
    for _ in range(30):
        middle = (low + high) / 2.0
        if quantile(sketch, middle) <= value:
            low = middle
        else:
            high = middle
    return low * (count - 1.0)


def rate_increase_z(now: float, now_minutes: float, before: float, before_minutes: float, dispersion: float) -> float:
    """Standard errors by which the per-minute rate of a count rose (``now`` events in
    ``now_minutes`` vs ``before`` in ``before_minutes``).

    Counts of calls are Poisson at best and overdispersed in practice (calls come in traces and
    bursts), so the Poisson variance of each rate (count / minutes²) is multiplied by
    ``dispersion`` (≥ 1: the variance/mean of the per-minute counts). At 20 calls a minute, 1.5×
    over 3 minutes is 3 standard errors; at 4 a minute it is 1.4, i.e. chance.
    """
    if now_minutes <= 0 or before_minutes <= 0:
        return 0.0
    variance = max(dispersion, 1.0) * (now / now_minutes**2 + before / before_minutes**2)
    if variance <= 0:
        return 0.0
    return float((now / now_minutes - before / before_minutes) / np.sqrt(variance))


def _baseline(
    metric: Metric, store: BaselineStore, family: Family, spec: Baseline, now: datetime, window: timedelta
) -> pd.Series:
    return baseline_values(metric, store.baseline(family, spec, now), window)


def _contract_limits(index: pd.Index, dims: tuple[str, ...], contracts: list[Contract], field: str) -> pd.Series:
    """The applicable contract limit per scope (NaN where no contract sets the field)."""
    frame = index.to_frame(index=False) if len(index) else pd.DataFrame(columns=list(dims))
    features = frame["feature"] if "feature" in dims else pd.Series([None] * len(frame))
    if field == "stage_p95_ms":
        limits = [
            stage_budget(contracts, tenant, feature, kind)
            for tenant, feature, kind in zip(frame["tenant_id"], features, frame["kind"], strict=False)
        ]
    else:
        limits = [
            contract_limit(contracts, field, tenant, feature)
            for tenant, feature in zip(frame["tenant_id"], features, strict=False)
        ]
    return pd.Series(np.array([np.nan if v is None else v for v in limits], dtype="float64"), index=index)


def _rate_limits(index: pd.Index, dims: tuple[str, ...], contracts: list[Contract], field: str) -> pd.Series:
    """The provider limit per scope (tenant × provider × model; NaN where no contract names it)."""
    frame = index.to_frame(index=False) if len(index) else pd.DataFrame(columns=list(dims))
    limits = [
        rate_limit(contracts, field, tenant, provider, model)
        for tenant, provider, model in zip(
            frame["tenant_id"], frame["provider"], frame["model_requested"], strict=False
        )
    ]
    return pd.Series(np.array([np.nan if v is None else v for v in limits], dtype="float64"), index=index)


def _new_keys(keys: KeyHistory, dims: tuple[str, ...], now: datetime, window: timedelta) -> pd.DataFrame:
    new = keys.new_keys(dims, now, window)
    if new.empty:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    per_scope = new.groupby(list(dims), sort=False)["calls"].sum().astype("float64")
    result = pd.DataFrame({"value": per_scope, "volume": per_scope})
    result["threshold"] = 0.0
    result["baseline"] = 0.0
    result["ratio"] = np.nan
    result["holds"] = result["sustains"] = result["value"] > 0
    result["severity"] = None
    return result[RESULT_COLUMNS]
