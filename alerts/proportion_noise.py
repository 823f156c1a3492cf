"""Is a change of a proportion real at its volume? The significance test of the ratio rules'
``min_z`` (cache hit rate, tier share, pass and feedback rates: successes among trials).

Trials are rarely independent: a session's turns hit the cache together, a popular question is
asked in bursts, one bad deploy's answers are graded alike. The successes in n trials then vary
φ times more than the binomial's n·p·(1−p) (overdispersion), and the binomial standard error
makes chance look significant where the clusters are few; a fixed ``min_traffic`` guard against
that either silences a quiet scope's real incident (a cache collapse at 0.5 requests/s had 54–77
cacheable calls per window, under the rule's former 100) or lets a clustered busy one page.

φ is measured per scope from its own minutes over the REFERENCE minutes ending one window
before the window (the spend rules' reference, :mod:`spanline.alerts.spend_noise`), by Pearson's
statistic: the squared standardised residuals of the successes about the reference's own rate,
over single minutes and over window-long stretches, whichever estimate is larger (clusters that
outlast a minute make a window vary more than its minutes add up to). The window's change is
then judged in standard errors √φ times the binomial's: the effective number of trials is n/φ
(:func:`spanline.alerts.conditions.significant`). φ is at least 1; with fewer than
``MIN_REFERENCE_MINUTES`` minutes with trials, or a reference rate of 0 or 1, it is 1 (the
binomial test) and the rule's ``min_traffic`` stands alone.

Limits: an incident in the reference (the same rate collapsed an hour ago) reads as dispersion
and makes the next change harder to page, never easier; a slow drift of the rate over the
reference does the same, slightly.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from spanline.alerts.metrics import Metric
from spanline.alerts.minute_parts import minute_parts
from spanline.alerts.spend_noise import MIN_REFERENCE_MINUTES, REFERENCE


def proportion_dispersion(
    frames: Iterable[tuple[datetime, pd.DataFrame]],
    metric: Metric,
    dims: tuple[str, ...],
    key: str | None,
    window_start: datetime,
    window: timedelta,
) -> pd.Series:
    """φ per scope of ``dims`` (scopes without a measurable reference left out) from the minute
    frames in [window_start − window − REFERENCE, window_start − window)."""
    reference_end = window_start - window
    chosen = [(minute, frame) for minute, frame in frames if reference_end - REFERENCE <= minute < reference_end]
    if len({minute for minute, _ in chosen}) < MIN_REFERENCE_MINUTES:
        return pd.Series(dtype="float64")
    num, den = minute_parts(chosen, metric, dims, key)
    successes, trials = num.to_numpy(dtype="float64"), den.to_numpy(dtype="float64")
    dispersion = pearson_dispersion(successes, trials)
    length = max(int(window / timedelta(minutes=1)), 1)
    if length > 1 and trials.shape[1] >= 3 * length:
        stretch_successes, stretch_trials = (
            np.lib.stride_tricks.sliding_window_view(counts, length, axis=1).sum(axis=2)
            for counts in (successes, trials)
        )
        dispersion = np.fmax(dispersion, pearson_dispersion(stretch_successes, stretch_trials, overlap=length))
    known = ((trials > 0).sum(axis=1) >= MIN_REFERENCE_MINUTES) & ~np.isnan(dispersion)
    return pd.Series(np.maximum(dispersion, 1.0), index=num.index)[known]


def pearson_dispersion(successes: np.ndarray, trials: np.ndarray, overlap: int = 1) -> np.ndarray:
    """Per row: the mean squared standardised residual of the successes about the row's own rate
    over the columns with trials, times k/(k−1) for that rate being fitted to the same data
    (k: the independent columns, the columns with trials / ``overlap`` for stretches ``overlap``
    minutes long, one minute apart). NaN where the rate is 0 or 1 or fewer than two columns have
    trials."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = successes.sum(axis=1) / trials.sum(axis=1)
        expected = trials * rate[:, None]
        residuals = np.where(trials > 0, (successes - expected) ** 2 / (expected * (1.0 - rate[:, None])), 0.0)
        columns = (trials > 0).sum(axis=1)
        independent = columns / overlap
        fitted = independent / np.maximum(independent - 1.0, 1.0)
        result: np.ndarray = np.where(
            (columns >= 2) & (rate > 0) & (rate < 1), residuals.sum(axis=1) / columns * fitted, np.nan
        )
    return result
