"""Ratio rules judge a change by the trials it rests on, counting clustered trials as fewer
(issue 16, item 3: counts are Poisson or overdispersed). A cache collapse in a quiet scope (60
cacheable calls in its window, every one a miss) is significant when the scope's hits come one
by one, and is chance when they come in sessions that hit together; the fixed ``min_traffic``
guard that stood for this before kept the quiet scope's real collapse from paging at all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from spanline.alerts.baselines import BaselineStore, KeyHistory
from spanline.alerts.conditions import evaluate_clause, family_of
from spanline.alerts.metrics import METRICS
from spanline.alerts.proportion_noise import pearson_dispersion, proportion_dispersion
from spanline.alerts.rules import Baseline, load_rules

START = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
HIT_RATE = 0.17
LOOKUPS_PER_MINUTE = 6


@pytest.mark.parametrize("correlation", [0.0, 0.3])
def test_the_dispersion_is_one_plus_the_cluster_inflation(correlation: float) -> None:
    """Minutes of n trials whose success rate is Beta-distributed around p with intra-minute
    correlation ρ (beta-binomial): Var = n·p(1−p)·(1 + (n−1)ρ), so φ = 1 + (n−1)ρ."""
    rng = np.random.default_rng(3)
    rows, minutes, n = 400, 100, 10
    if correlation:
        concentration = 1 / correlation - 1
        rates = rng.beta(HIT_RATE * concentration, (1 - HIT_RATE) * concentration, (rows, minutes))
    else:
        rates = np.full((rows, minutes), HIT_RATE)
    trials = np.full((rows, minutes), float(n))
    successes = rng.binomial(n, rates).astype("float64")
    estimates = pearson_dispersion(successes, trials)
    assert float(np.median(estimates)) == pytest.approx(1 + (n - 1) * correlation, rel=0.1)


def _cache_minutes(hits: list[float]) -> list[tuple[datetime, pd.DataFrame]]:
    return [
        (
            START + timedelta(minutes=number),
            pd.DataFrame(
                {
                    "tenant_id": ["acme"],
                    "feature": ["chat"],
                    "kind": ["cache"],
                    "cache_hits": [hit],
                    "cache_lookups": [float(LOOKUPS_PER_MINUTE)],
                }
            ),
        )
        for number, hit in enumerate(hits)
    ]


def _judged(history_hits: np.ndarray) -> pd.Series:
    """The bundled cache_collapse clause (with a trailing 3 h baseline) on acme/chat after these
    minutes of hits and then 10 minutes of misses only, recorded as the evaluator records them."""
    rule = next(r for r in load_rules() if r.name == "cache_collapse")
    baseline = Baseline(kind="trailing", over=timedelta(hours=3), min_hours=2)
    rule = rule.model_copy(update={"condition": rule.condition.model_copy(update={"baseline": baseline})})
    dims = tuple(rule.scope)
    frames = _cache_minutes([*history_hits.tolist(), *([0.0] * 10)])
    store = BaselineStore()
    for minute, frame in frames:
        parts = frame.assign(num=frame["cache_hits"], den=frame["cache_lookups"])[[*dims, "num", "den"]]
        store.record(family_of(rule, dims), minute, parts)
    now = frames[-1][0] + timedelta(minutes=1)
    return evaluate_clause(rule, dims, store, KeyHistory(), [], now, frames).loc[("acme", "chat")]


def test_a_quiet_scopes_collapse_pages_when_hits_are_independent_and_not_when_they_cluster() -> None:
    rng = np.random.default_rng(11)
    minutes = 4 * 60
    independent = rng.binomial(LOOKUPS_PER_MINUTE, HIT_RATE, minutes).astype("float64")
    sessions = np.where(rng.random(minutes) < HIT_RATE, float(LOOKUPS_PER_MINUTE), 0.0)  # all or none

    alone, clustered = _judged(independent), _judged(sessions)

    for judged in (alone, clustered):
        assert judged["value"] == 0.0 and judged["volume"] == 10 * LOOKUPS_PER_MINUTE
        assert judged["baseline"] == pytest.approx(HIT_RATE, abs=0.04)
        assert judged["sustains"]  # the fall itself is there in both
    assert alone["holds"]  # ~3.5 binomial standard errors
    assert not clustered["holds"]  # φ ≈ 6: ~1.4 of its standard errors


def test_a_scope_without_a_reference_is_judged_binomially() -> None:
    """Fewer reference minutes than the spend rules ask: φ unknown, left out (the binomial test)."""
    frames = _cache_minutes([1.0] * 20)
    dispersion = proportion_dispersion(
        frames, METRICS["cache_hit_rate"], ("tenant_id", "feature"), None, frames[-1][0], timedelta(minutes=10)
    )
    assert dispersion.empty
