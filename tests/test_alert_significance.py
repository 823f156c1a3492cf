"""The significance tests the relative rules and diagnoses use (issue 16, item 3): a change must
be large AND unlikely at the volume it was measured on."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from ddsketch import DDSketch

from spanline.alerts.baselines import SKETCH_ACCURACY
from spanline.alerts.conditions import binomial_tail, exceedance_p, normal_tail, rate_increase_z, significant
from spanline.alerts.diagnosis import Periods, _rate_limits
from spanline.alerts.rules import load_rules
from tests.support.alert_frames import Knobs, minute_frame
from tests.test_alert_evaluator import START


def test_a_traffic_rise_is_judged_by_its_volume_and_dispersion() -> None:
    # 1.5x over 3 minutes against a 60-minute reference
    assert rate_increase_z(90, 3, 1200, 60, 1.0) == pytest.approx(3.11, abs=0.01)  # 20 -> 30 calls/min
    assert rate_increase_z(18, 3, 240, 60, 1.0) == pytest.approx(1.39, abs=0.01)  # 4 -> 6 calls/min: chance
    assert rate_increase_z(90, 3, 1200, 60, 4.0) == pytest.approx(3.11 / 2, abs=0.01)  # bursty traffic
    assert rate_increase_z(0, 0, 10, 60, 1.0) == 0.0


def test_a_proportion_change_needs_its_standard_errors() -> None:
    value, baseline = pd.Series([0.30, 0.30]), pd.Series([0.23, 0.23])
    assert list(significant(value, baseline, pd.Series([100.0, 2000.0]), 3.0)) == [False, True]


def _periods(before_calls: float, now_calls: float, seed: int = 1) -> Periods:
    rng = np.random.default_rng(seed)
    frames = []
    for n in range(120):
        minute = START + timedelta(minutes=n)
        requests = now_calls if n >= 117 else before_calls
        frames.append((minute, minute_frame(minute, rng, replace(Knobs(), requests=requests))))
    return Periods(frames, {"provider": "openai"}, START + timedelta(minutes=120), timedelta(minutes=3))


def test_the_rate_limit_diagnosis_calls_a_surge_only_when_it_is_significant() -> None:
    """1.5x an hour earlier is a surge at hundreds of calls a minute, not at a handful."""
    rule = next(r for r in load_rules() if r.name == "rate_limiting")
    busy, _ = _rate_limits(_periods(100.0, 200.0), rule, {"provider": "openai"}, None)  # type: ignore[arg-type]
    assert busy == "traffic_surge"
    # a handful of calls a minute: twice the reference hour by chance (seed 2), 2.2 standard errors
    branch, details = _rate_limits(_periods(1.0, 2.0, seed=2), rule, {"provider": "openai"}, None)  # type: ignore[arg-type]
    attempts = details["first_attempts_per_min"]
    assert attempts["now"] >= 1.5 * attempts["before"]
    assert branch != "traffic_surge" and details["traffic_change_z"] < 3


def _sketch(values: np.ndarray) -> DDSketch:
    sketch = DDSketch(SKETCH_ACCURACY)
    for value in values:
        sketch.add(float(value))
    return sketch


def test_the_binomial_tail_is_exact() -> None:
    assert binomial_tail(5, 3, 0.05) == pytest.approx(10 * 0.05**3 * 0.95**2 + 5 * 0.05**4 * 0.95 + 0.05**5)
    assert binomial_tail(16, 4, 0.05) == pytest.approx(0.00700, abs=0.00005)
    assert binomial_tail(10_000, 600, 0.05) == pytest.approx(4.8e-6, rel=0.1)  # (600 - 500) / 21.8 = 4.6 sd
    assert binomial_tail(16, 0, 0.05) == binomial_tail(100, 5, 0.05) == 1.0  # at or below the mean: not summed
    assert binomial_tail(16, 17, 0.05) == 0.0
    assert normal_tail(3.0) == pytest.approx(0.00135, abs=0.00001)


def test_a_quantile_rise_counts_the_samples_above_the_baseline_quantile() -> None:
    """10 of 100 samples above the baseline p95 where 5 are expected: a 2.8 % chance; none above
    is no evidence at all."""
    hundred = _sketch(np.repeat([10.0, 100.0], [90, 10]))
    chance = exceedance_p([hundred, hundred, None, hundred], np.array([50.0, 200.0, 50.0, np.nan]), 0.95)
    assert chance[0] == pytest.approx(binomial_tail(100, 10, 0.05)) and 0.02 < chance[0] < 0.04
    assert chance[1] == 1.0
    assert np.isnan(chance[2]) and np.isnan(chance[3])  # no samples, no baseline: no verdict


def test_a_quiet_scopes_slow_calls_are_chance_and_a_latency_spike_is_not() -> None:
    """Few samples of a heavy-tailed TTFT (Pareto, alpha 1.5: long prompts; a quiet feature's 5
    minutes): two slow calls double the sample p95 in about 3 % of windows of 16, while the sign
    test at min_z 3 (a 0.135 % chance) passes in fewer than 0.2 %, at 5 samples too; a spike that
    makes every call 5x slower passes in nearly every window of 16, and in most of 5."""
    rng = np.random.default_rng(7)
    p95 = 0.05 ** (-1 / 1.5)  # Pareto with x_m = 1
    trials = 4000
    for samples, caught in ((16, 0.97), (5, 0.6)):
        quiet = [_sketch(1.0 + rng.pareto(1.5, samples)) for _ in range(trials)]
        spiked = [_sketch(5.0 * (1.0 + rng.pareto(1.5, samples))) for _ in range(200)]
        significant_quiet = exceedance_p(quiet, np.full(trials, p95), 0.95) <= normal_tail(3.0)
        assert significant_quiet.mean() < 0.002, samples
        assert (exceedance_p(spiked, np.full(200, p95), 0.95) <= normal_tail(3.0)).mean() > caught, samples
        if samples == 16:
            doubled = np.array([sketch.get_quantile_value(0.95) > 2.0 * p95 for sketch in quiet])
            assert doubled.mean() > 0.02
