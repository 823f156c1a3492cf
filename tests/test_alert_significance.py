"""The significance tests the relative rules and diagnoses use (issue 16, item 3): a change must
be large AND unlikely at the volume it was measured on."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from spanline.alerts.conditions import rate_increase_z, significant
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
