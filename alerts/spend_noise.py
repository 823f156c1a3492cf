"""Is a change of spend real at its volume? The significance test of the spend rules (``min_z``
on a ``cost_usd`` ratio_to_baseline clause).

A window's spend S is a sum over the requests in it: their number is a count, Poisson at best and
overdispersed in practice (bursts, traces of many calls), and each one's cost is heavy-tailed (a
book-length summary or a long agent run costs a hundred ordinary chats). For such a compound sum,
with Var(N) = φ·E[N],

    Var(S) = E[N]·Var(X) + Var(N)·E[X]² = D·E[S],   D = (Var(X) + φ·E[X]²) / E[X]  (USD),

so the variance-to-mean ratio D of spend does not depend on the traffic rate: measured at the
reference's rate it holds at the baseline's. D is measured from the scope's own per-minute
spend over the REFERENCE minutes ending one window before the window (sample variance / mean of those minutes, quiet minutes
counting as 0; also over window-long stretches, see :func:`spend_dispersion`). That takes burstiness, the correlation of one request's calls and the cost tail
as they are; a per-request mean and variance would need every request's cost, which the minute
aggregation does not keep (it keeps sums), and would miss the correlation. The window's spend is
then compared in standard errors with what the scope was expected to spend, E: the larger of the
baseline's expectation B and the reference minutes' own level R (both for the window's length),

    z = (S − E) / √(D·E),   E = max(B, R),

so a baseline that lags the day's curve (the trailing hours on a morning ramp, history from
another day) does not turn the usual level into a spike: a spike is a rise above both what this
hour usually spends and what the scope was just spending. A new level that lasts is therefore
its own reference after REFERENCE minutes and starts no page; a page already firing lasts while
its ratio to the baseline holds (significance starts a page, it does not end one:
alerts/evaluator.py), and the day-over-day and budget rules watch lasting levels.

(a normal approximation: at 0.3 requests/s a 10-minute window sums a few hundred LLM calls).
An incident in the reference (a 6x traffic hour that ended 50 minutes ago) would make both D and
R its own and hide the next one, so runs of 10-minute stretches of the reference that spent more
than ``TRIM``x the baseline's level are left out, with the minutes above that level beside
such a run (:func:`usual_minutes`). The baseline is the yardstick because its hours leave
incidents out too (alerts/baselines.py) and are not moved by one (the reference's own median is,
once an incident fills half of it); a single such stretch is one costly request, part of the noise.

A real 2.5x at 0.3 requests/s is 8 standard errors or more; a chance doubling of a feature's
10 minutes is 5 or more at the simulator's rates, and the rule's ratio and ``min_delta`` gates
stand beside z. A tail rarer than the reference hour (one request costing more than several
minutes of the scope's usual spend, never seen in the hour before) is not in D, nor is one
without a finite variance (a long document's prompt length); so a rise must also be spread over
the window's minutes (``spread_z``, a rank-sum test): a few costly requests lift a few. Limits:
without ``MIN_REFERENCE_MINUTES`` minutes of history (a fresh start before the bootstrap's
minutes, a scope with no spend in the reference) nothing is significant.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from spanline.alerts.baselines import INCIDENT_FACTOR
from spanline.alerts.metrics import Metric
from spanline.alerts.minute_parts import minute_parts

#: Minutes before the window whose spend measures D: enough to hold the usual tail and enough
#: window-length stretches (the evaluator's frame ring holds them beside the rules' windows and
#: gap: alerts/evaluator.py DIAGNOSIS_MINUTES).
REFERENCE = timedelta(minutes=100)
#: Fewer reference minutes than this: D is unknown and no spend change is significant.
MIN_REFERENCE_MINUTES = 30
#: The reference is judged in stretches of this many minutes (counted back from the window); a
#: stretch whose mean spend is above ``TRIM`` x the baseline's was an incident, not noise.
STRETCH_MINUTES = 10
TRIM = INCIDENT_FACTOR
#: A rise must lift the window's minutes as a whole: their rank sum among the reference minutes
#: must be this many standard errors above chance (Mann-Whitney). A handful of a long-document
#: feature's requests, whose prompt lengths have no finite variance, spent 4x their usual 10
#: minutes in two or three minutes (the week's false pages at 0.5 requests/s).
SPREAD_Z = 3.0


def spend_dispersion(
    frames: Iterable[tuple[datetime, pd.DataFrame]],
    metric: Metric,
    dims: tuple[str, ...],
    window_start: datetime,
    window: timedelta = timedelta(minutes=1),
    baseline: pd.Series | None = None,
    gap: timedelta = timedelta(0),
) -> pd.DataFrame:
    """Per scope of ``dims`` (the index store.window gives): ``dispersion`` D in the metric's unit
    and ``per_minute``, the mean spend per minute, from the minute frames in [window_start − gap −
    REFERENCE, window_start − gap), and ``spread_z``, how far the minutes of [window_start,
    window_start + window) rank above those (:func:`rank_sum_z`); scopes without spend in the
    reference are left out.

    ``gap``: the spend rules leave one window between the reference and the window. A rise
    enters the window's past as soon as the window fills; with no gap its first minutes became
    its own noise at once (D and the level up), and z fell from 10 to 1 within 15 minutes of a
    routing shift that still ran, leaving a page 5-9 minutes to start (the evaluator's frame
    ring holds the longest window + gap + REFERENCE: 30 + 10 + 100 = 140 minutes).

    D is the larger of two measurements: from single minutes (precise when minutes are
    independent) and from every ``window``-long stretch of the reference (rolling sums), which
    keeps what single minutes miss: bursts lasting several minutes make a window's spend vary
    more than its minutes' variances add up to. ``baseline``: the usual spend per ``window`` and
    scope, whose incidents are left out of the reference (:func:`usual_minutes`)."""
    reference_end = window_start - gap
    chosen = [(minute, frame) for minute, frame in frames if reference_end - REFERENCE <= minute < reference_end]
    if len(chosen) < MIN_REFERENCE_MINUTES:
        return pd.DataFrame({column: pd.Series(dtype="float64") for column in ("dispersion", "per_minute", "spread_z")})
    per_minute = minute_parts(chosen, metric, dims)[0]
    per_window = pd.Series(np.nan, index=per_minute.index) if baseline is None else baseline.reindex(per_minute.index)
    minutes = max(window / timedelta(minutes=1), 1.0)
    usual = usual_minutes(per_minute.to_numpy(dtype="float64"), per_window.to_numpy(dtype="float64") / minutes)
    dispersion = _variance_to_mean(usual)
    length = max(int(window / timedelta(minutes=1)), 1)
    if length > 1 and per_minute.shape[1] >= 3 * length:
        # a window-long stretch overlapping a left-out minute sums to NaN: none spans an incident
        sums = np.lib.stride_tricks.sliding_window_view(usual, length, axis=1).sum(axis=2)
        dispersion = np.fmax(dispersion, _variance_to_mean(sums))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a scope with every minute left out: NaN
        level = np.nanmean(usual, axis=1)
    current = [(minute, frame) for minute, frame in frames if window_start <= minute < window_start + window]
    spent = np.zeros((len(usual), length))  # a window minute without rows spent nothing
    if current:
        in_window = minute_parts(current, metric, dims)[0].reindex(per_minute.index, fill_value=0.0)
        spent[:, : in_window.shape[1]] = in_window.to_numpy(dtype="float64")[:, :length]
    result = pd.DataFrame(
        {"dispersion": dispersion, "per_minute": level, "spread_z": rank_sum_z(spent, usual)},
        index=per_minute.index,
    )
    return result[result["dispersion"].notna() & (result["dispersion"] > 0)]


def rank_sum_z(window: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per row: the Mann-Whitney rank-sum statistic of the ``window`` minutes among the known
    (non-NaN) ``reference`` minutes, in standard errors above chance (ties averaged, the variance
    corrected for them; NaN without two reference minutes). Ranks ignore how costly the costliest
    minutes are: a few costly requests lift a few ranks, a change of the feature's spend all.

    Column-wise over the rows: a value's average rank is the known values below it plus half of
    those equal to it (itself included) plus one half; Σ(t³ − t) over tied groups is Σ(t² − 1)
    over values, t being each value's group size."""
    values = np.concatenate([window, reference], axis=1)
    known = ~np.isnan(values)
    n1 = window.shape[1]
    n2 = known[:, n1:].sum(axis=1)
    n = n1 + n2
    below = (values[:, None, :] < window[:, :, None]).sum(axis=2)
    equal = (values[:, None, :] == window[:, :, None]).sum(axis=2)
    rank_sum = (below + (equal + 1) / 2.0).sum(axis=1)
    group = (values[:, :, None] == values[:, None, :]).sum(axis=2)
    ties = np.where(known, group**2 - 1, 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1)))
        z = (rank_sum - n1 * (n1 + 1) / 2.0 - n1 * n2 / 2.0) / np.sqrt(variance)
    result: np.ndarray = np.where((n2 >= 2) & (variance > 0), z, np.nan)
    return result


def equal_lift(spread_z: float, window: timedelta, longer: timedelta) -> float:
    """The rank-sum z at which a ``longer`` window's minutes outrank the reference's as often as
    a ``window`` whose z is ``spread_z`` (the same chance that a window minute ranks above a
    reference minute): z grows with √(n1·n2 / (n1 + n2 + 1)) at a fixed lift, so a 30-minute
    window asks 4.8 where a 10-minute one asks 3 (n2: the REFERENCE minutes). The same test would
    otherwise accept a smaller lift the longer the window, and a quiet long-document feature's
    request bursts, lasting half an hour, reached 3.9."""
    reference = REFERENCE / timedelta(minutes=1)

    def scale(length: timedelta) -> float:
        minutes = length / timedelta(minutes=1)
        return math.sqrt(minutes * reference / (minutes + reference + 1))

    return spread_z * scale(longer) / scale(window)


def usual_minutes(per_minute: np.ndarray, usual_level: np.ndarray) -> np.ndarray:
    """Scopes × minutes of spend with every ``STRETCH_MINUTES`` stretch (counted back from the last
    minute) whose mean exceeds ``TRIM`` x the scope's ``usual_level`` (spend per minute), next to
    another such stretch, set to NaN, and so are the minutes above that level in the stretches
    on either side of such a run (an incident's edges rarely fall on a stretch's). A scope without
    a usual level (NaN) keeps every minute. ``per_minute`` has at least one minute (the
    reference has ``MIN_REFERENCE_MINUTES``)."""
    stretch = np.arange(per_minute.shape[1])[::-1] // STRETCH_MINUTES  # 0 = the stretch just before the window
    means = np.stack([per_minute[:, stretch == k].mean(axis=1) for k in range(int(stretch.max()) + 1)], axis=1)
    with np.errstate(invalid="ignore"):
        high = means > TRIM * usual_level[:, None]  # NaN levels compare false
        high_minutes = per_minute > TRIM * usual_level[:, None]
    # an incident lasts: a lone high stretch is one costly request, the tail D must keep
    incident = high & (_shifted(high, 1) | _shifted(high, -1))
    edges = (_shifted(incident, 1) | _shifted(incident, -1)) & ~incident
    usual = per_minute.copy()
    usual[incident[:, stretch] | (edges[:, stretch] & high_minutes)] = np.nan
    return usual


def _shifted(flags: np.ndarray, by: int) -> np.ndarray:
    """Each row's flags moved ``by`` columns (+1: each column holds its left neighbour's), False-filled."""
    moved = np.zeros_like(flags)
    if by > 0:
        moved[:, by:] = flags[:, :-by]
    else:
        moved[:, :by] = flags[:, -by:]
    return moved


def _variance_to_mean(samples: np.ndarray) -> np.ndarray:
    """Per row: sample variance / mean over its known (non-NaN) values (NaN where the mean is 0)."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without two known values: NaN
        mean = np.nanmean(samples, axis=1)
        variance = np.nanvar(samples, axis=1, ddof=1)
        return np.where(mean > 0, variance / np.where(mean > 0, mean, 1.0), np.nan)


def spend_z(value: pd.Series, baseline: pd.Series, reference: pd.DataFrame, window: timedelta) -> pd.Series:
    """Standard errors by which the window's spend ``value`` exceeds what was expected: the larger
    of the ``baseline`` and the reference's level over the window (NaN where unknown)."""
    reference = reference.reindex(value.index)
    level = reference["per_minute"] * (window / timedelta(minutes=1))
    expected = np.fmax(baseline.where(baseline > 0), level)
    return (value - expected) / np.sqrt(reference["dispersion"] * expected)
