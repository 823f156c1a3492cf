"""Baselines and long windows read exactly the time their names say (issue 16, defects 2–4).

Spend is recorded as the evaluator records it (one per-scope row per minute, or closed hours as
bootstrap loads them) at known rates, so every expected figure is minutes × rate.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from spanline.alerts.baselines import BaselineStore, KeyHistory
from spanline.alerts.conditions import evaluate_clause, family_of
from spanline.alerts.rules import Baseline, Rule, load_rules

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
T0 = datetime(2026, 3, 2, tzinfo=UTC)


def bundled(name: str) -> Rule:
    return next(rule for rule in load_rules() if rule.name == name)


def trailing_spend() -> Rule:
    """A tenant's spend over 10 minutes against its trailing 24 h: the bundled spend rule with the
    baseline these tests read (the bundled one is per feature, same hour first)."""
    rule = bundled("cost_spike_hourly")
    baseline = Baseline(kind="trailing", over=timedelta(hours=24), min_hours=3)
    condition = rule.condition.model_copy(update={"baseline": baseline, "min_z": 0.0})
    return rule.model_copy(update={"scope": ["tenant_id"], "group_by": None, "condition": condition})


def spend(store: BaselineStore, rule: Rule, start: datetime, end: datetime, per_minute: float) -> None:
    family = family_of(rule, tuple(rule.scope))
    minute = start
    while minute < end:
        store.record(family, minute, pd.DataFrame({"tenant_id": ["acme"], "num": [per_minute], "den": [1.0]}))
        minute += MINUTE


def closed_hours(store: BaselineStore, rule: Rule, start: datetime, end: datetime, per_minute: float) -> None:
    hours = pd.date_range(start, end, freq="h", inclusive="left")
    frame = pd.DataFrame(
        {"tenant_id": "acme", "hour": hours, "num": per_minute * 60, "den": 60.0, "value": float("nan")}
    )
    store.record_hours(family_of(rule, tuple(rule.scope)), frame)


def figures(store: BaselineStore, rule: Rule, now: datetime) -> pd.Series:
    result = evaluate_clause(rule, tuple(rule.scope), store, KeyHistory(), [], now)
    return result.loc["acme"]


def test_day_over_day_compares_the_last_24_hours_with_the_24_before() -> None:
    """Spend doubles at T0 + 24 h; evaluated at T0 + 48 h 30 min, half-way into an hour, the
    previous window [T0 + 0:30, T0 + 24:30) holds 23.5 h at 1/min and 0.5 h at 2/min."""
    rule = bundled("cost_spike_day_over_day")
    store = BaselineStore()
    closed_hours(store, rule, T0, T0 + 24 * HOUR, per_minute=1.0)
    closed_hours(store, rule, T0 + 24 * HOUR, T0 + 47 * HOUR, per_minute=2.0)
    now = T0 + 48 * HOUR + 30 * MINUTE
    spend(store, rule, T0 + 47 * HOUR, now, per_minute=2.0)

    row = figures(store, rule, now)

    assert row["value"] == pytest.approx(24 * 60 * 2.0)
    assert row["baseline"] == pytest.approx(23.5 * 60 * 1.0 + 0.5 * 60 * 2.0)
    assert row["ratio"] == pytest.approx(2880 / 1470)
    assert row["holds"]


def test_day_over_day_is_quiet_when_spend_is_flat() -> None:
    rule = bundled("cost_spike_day_over_day")
    store = BaselineStore()
    closed_hours(store, rule, T0, T0 + 47 * HOUR, per_minute=1.5)
    now = T0 + 48 * HOUR + 10 * MINUTE
    spend(store, rule, T0 + 47 * HOUR, now, per_minute=1.5)

    row = figures(store, rule, now)

    assert row["ratio"] == pytest.approx(1.0)
    assert not row["holds"]


def test_day_over_day_scales_a_partly_watched_previous_day_to_24_hours() -> None:
    """Watching began at T0 + 3 h; at T0 + 47 h the previous 24 h hold only 20 watched hours
    (the rule's min_hours). Spend is flat at 1/min: the unwatched 4 h are unknown, not zero,
    so the previous day is 20 h of spend scaled to 24 h and the ratio is 1 (it was 1.2 when
    those hours counted as zero: a page on flat spend, the first minute the rule could judge)."""
    rule = bundled("cost_spike_day_over_day")
    store = BaselineStore()
    closed_hours(store, rule, T0 + 3 * HOUR, T0 + 46 * HOUR, per_minute=1.0)
    now = T0 + 47 * HOUR
    spend(store, rule, T0 + 46 * HOUR, now, per_minute=1.0)

    row = figures(store, rule, now)

    assert row["value"] == pytest.approx(24 * 60 * 1.0)
    assert row["baseline"] == pytest.approx(24 * 60 * 1.0)
    assert not row["holds"]
    before_min_hours = figures(store, rule, now - MINUTE)
    assert not before_min_hours["holds"] and before_min_hours["ratio"] == pytest.approx(24 * 60 / (19 * 60 + 59))


def test_a_partial_first_hour_and_the_hour_just_closed_weigh_what_they_hold() -> None:
    """The worker starts at 10:37 and spends 1/min until 13:00, then 2/min. At 14:05 the
    trailing baseline holds 10:37–14:00 (3 h 23 min of watching: the 13:00 hour just closed
    included), so the average hour is (23 + 60 + 60 + 120) / (23/60 + 3); the current 10
    minutes (2/min) are 20."""
    rule = trailing_spend()
    store = BaselineStore()
    start = T0 + 10 * HOUR + 37 * MINUTE
    spend(store, rule, start, T0 + 13 * HOUR, per_minute=1.0)
    now = T0 + 14 * HOUR + 5 * MINUTE
    spend(store, rule, T0 + 13 * HOUR, now, per_minute=2.0)

    row = figures(store, rule, now)

    per_hour = (23 + 60 + 60 + 120) / (23 / 60 + 3)
    assert row["value"] == pytest.approx(20.0)
    assert row["baseline"] == pytest.approx(per_hour / 6)
    assert row["ratio"] == pytest.approx(20.0 / (per_hour / 6))


def test_a_scope_quiet_for_hours_averages_over_every_watched_hour() -> None:
    """Spend in one of four watched hours is a quarter of that hour per hour, not all of it."""
    rule = trailing_spend()
    store = BaselineStore()
    family = family_of(rule, tuple(rule.scope))
    closed_hours(store, rule, T0, T0 + HOUR, per_minute=2.0)
    store.record_hours(
        family,
        pd.DataFrame(
            {
                "tenant_id": "globex",
                "hour": pd.date_range(T0, T0 + 4 * HOUR, freq="h", inclusive="left"),
                "num": 1.0,
                "den": 1.0,
                "value": float("nan"),
            }
        ),
    )
    now = T0 + 4 * HOUR + 10 * MINUTE
    spend(store, rule, T0 + 4 * HOUR, now, per_minute=2.0)

    row = figures(store, rule, now)

    assert row["baseline"] == pytest.approx(120 / 4 / 6)


@pytest.mark.parametrize("over", [timedelta(hours=3), timedelta(hours=24)])
def test_an_incident_hour_is_left_out_of_a_spend_baseline(over: timedelta) -> None:
    """Five watched hours at 1/min, the last closed one with 40 minutes of 6x traffic (4.3x the
    usual hour): the baseline is the usual 10 per 10 minutes, not 25 (the trailing 3 h, two
    closed hours, with the incident: the week's missed routing shift 50 minutes after a traffic
    incident). The incident is told apart by the median of at least 6 trailing hours (two alone
    cannot), and its watched time goes with it."""
    rule = trailing_spend()
    baseline = Baseline(kind="trailing", over=over, min_hours=2)
    rule = rule.model_copy(update={"condition": rule.condition.model_copy(update={"baseline": baseline})})
    store = BaselineStore()
    spend(store, rule, T0, T0 + 4 * HOUR + 20 * MINUTE, per_minute=1.0)
    spend(store, rule, T0 + 4 * HOUR + 20 * MINUTE, T0 + 5 * HOUR, per_minute=6.0)
    now = T0 + 5 * HOUR + 10 * MINUTE
    spend(store, rule, T0 + 5 * HOUR, now, per_minute=1.0)

    row = figures(store, rule, now)

    assert row["baseline"] == pytest.approx(10.0)


def test_a_lasting_new_spend_level_becomes_the_baseline() -> None:
    """Spend quadruples for good after the first of three hours: the median hour is the new level,
    so no hour is an incident and the baseline is the plain average (the page resolves as a
    lasting level becomes the usual one, as the noise reference's does)."""
    rule = trailing_spend()
    store = BaselineStore()
    spend(store, rule, T0, T0 + HOUR, per_minute=1.0)
    now = T0 + 3 * HOUR + 10 * MINUTE
    spend(store, rule, T0 + HOUR, now, per_minute=4.0)

    row = figures(store, rule, now)

    assert row["baseline"] == pytest.approx((60 + 240 + 240) / 3 / 6)


def test_a_sporadic_scope_keeps_its_rare_spend_in_the_baseline() -> None:
    """Spend in one hour of three (the median hour spent nothing) is the scope's way, not an
    incident: the baseline keeps it (a third of it per hour)."""
    rule = trailing_spend()
    store = BaselineStore()
    closed_hours(store, rule, T0, T0 + HOUR, per_minute=3.0)
    family = family_of(rule, tuple(rule.scope))
    store.record_hours(family, pd.DataFrame({"tenant_id": "globex", "hour": [T0 + 2 * HOUR], "num": 1.0, "den": 1.0}))
    now = T0 + 3 * HOUR + 10 * MINUTE
    spend(store, rule, T0 + 3 * HOUR, now, per_minute=1.0)

    row = figures(store, rule, now)

    assert row["baseline"] == pytest.approx(180 / 3 / 6)


def test_a_night_rise_is_judged_against_the_same_hour_of_two_previous_days() -> None:
    """Spend runs at 1/min all day but 0.2/min from 02:00 to 03:00. On the third night a routing
    shift makes 02:20-02:30 cost 1/min: 5x that hour's usual, the same as the evening hours
    before it. The trailing 3 h (evening level) read 1x; the same hour of the two previous days
    reads 5x and the rule holds (the bundled rule waited for three such days, so a week's routing
    shift on its third night was never paged)."""
    rule = bundled("cost_spike_hourly").model_copy(update={"scope": ["tenant_id"], "group_by": None})
    rule = rule.model_copy(update={"condition": rule.condition.model_copy(update={"min_z": 0.0})})
    store = BaselineStore()
    for day in range(2):
        night = T0 + day * 24 * HOUR + 2 * HOUR
        closed_hours(store, rule, night - 2 * HOUR, night, per_minute=1.0)
        closed_hours(store, rule, night, night + HOUR, per_minute=0.2)
        closed_hours(store, rule, night + HOUR, night + 22 * HOUR, per_minute=1.0)
    night = T0 + 48 * HOUR + 2 * HOUR
    closed_hours(store, rule, night - 2 * HOUR, night, per_minute=1.0)
    spend(store, rule, night, night + 20 * MINUTE, per_minute=0.2)
    now = night + 30 * MINUTE
    spend(store, rule, night + 20 * MINUTE, now, per_minute=1.0)

    row = figures(store, rule, now)

    assert row["baseline"] == pytest.approx(0.2 * 10)
    assert row["ratio"] == pytest.approx(5.0)
    assert row["holds"]
