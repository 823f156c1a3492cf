"""Blips shorter than a burn-rate rule's short window page nothing; storms and outages page fast.

The independent traffic model at 5 requests/s goes through the worker's ``process_batch``, the
windows' ``aggregate`` and the real evaluator with the bundled rules (``spanline.alert_replay``):
one learnt hour, then a 20-second wall of 429s and a 30-second full outage, each straddling a
minute boundary (at minute grain the wall is two minutes at ~10 %, the outage ~30 % of a
two-minute window), then a 15 % 429 storm and an 85 % outage. The same traffic with ``sustained``
taken off the rules pages the wall (and, on this seed, the outage blip too): what the slots fix.
Replays cover whole 10-minute blocks of the model, so both runs see the same traffic.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from spanline.alert_evaluation import WEEK_START
from spanline.alert_replay import replay
from spanline.alerts.events import AlertEvent
from spanline.alerts.rules import BurnRate, Rule, load_rules
from spanline.simulator.traffic_model import TrafficModel
from spanline.simulator.traffic_overlays import Overlay
from spanline.streams.pricing import PriceCatalog

pytestmark = pytest.mark.scenarios

LEARNT = WEEK_START + timedelta(hours=1)
WALL = Overlay(
    name="wall-429",
    start=LEARNT + timedelta(minutes=5, seconds=50),
    duration=timedelta(seconds=20),
    provider="openai",
    knobs={"rate_limited": 1.0},
)
BLIP = Overlay(
    name="outage-30s",
    start=LEARNT + timedelta(minutes=10, seconds=45),
    duration=timedelta(seconds=30),
    provider="anthropic",
    knobs={"server_error": 1.0},
)
STORM = Overlay(
    name="storm", start=LEARNT + timedelta(minutes=16), duration=timedelta(minutes=8), provider="openai",
    knobs={"rate_limited": 0.15},
)  # fmt: skip
OUTAGE = Overlay(
    name="outage", start=LEARNT + timedelta(minutes=30), duration=timedelta(minutes=8), provider="anthropic",
    knobs={"server_error": 0.85},
)  # fmt: skip


def _firing(rules: list[Rule], evaluated_minutes: int) -> list[AlertEvent]:
    model = TrafficModel(start=WEEK_START, requests_per_s=5.0, overlays=(WALL, BLIP, STORM, OUTAGE))
    days = (60 + evaluated_minutes) / 1440
    result = replay(model, days, PriceCatalog.load(), warmup_hours=1, rules=rules)
    return [event for event in result.events if event.state == "firing"]


def _first(events: list[AlertEvent], rule: str, after: datetime) -> datetime | None:
    return min((event.at for event in events if event.rule == rule and event.at > after), default=None)


def test_blips_page_nothing_while_a_storm_and_an_outage_page_fast() -> None:
    events = _firing(load_rules(), 50)
    assert [e for e in events if e.at <= STORM.start] == []  # neither blip, nor anything else
    storm = _first(events, "rate_limiting", STORM.start)
    assert storm is not None and storm - STORM.start <= timedelta(minutes=3), events
    outage = _first(events, "error_rate", OUTAGE.start)
    assert outage is not None and outage - OUTAGE.start <= timedelta(minutes=2), events
    assert {e.severity for e in events if e.rule == "error_rate" and e.at == outage} == {"critical"}


def test_at_minute_grain_the_same_blips_page() -> None:
    """The control: the bundled rules without ``sustained`` page the 20-second wall of 429s."""
    minute_grain = [_without_sustained(rule) for rule in load_rules()]
    events = _firing(minute_grain, 20)
    wall = _first(events, "rate_limiting", WALL.start)
    assert wall is not None and wall < BLIP.start, events


def _without_sustained(rule: Rule) -> Rule:
    if not isinstance(rule.condition, BurnRate):
        return rule
    tiers = [tier.model_copy(update={"sustained": None}) for tier in rule.condition.tiers]
    return rule.model_copy(update={"condition": rule.condition.model_copy(update={"tiers": tiers})})
