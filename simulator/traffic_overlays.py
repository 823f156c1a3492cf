"""Incidents laid over the independent traffic model (simulator/traffic_model.py).

An :class:`Overlay` is a time window, whose requests it touches (tenant, feature, provider) and
knobs whose neutral values change nothing. A knob's strength can ramp linearly over the window
(a slow drift) or hold for a few seconds (a blip). Overlays may overlap; where two set the same
knob on the same request, the later-listed one wins. Each overlay says what it must page: a
scenario of the built-in registry (simulator/scenarios.py gives the rule, runbook and branch) or
nothing (blips shorter than a burn-rate rule's short window, drifts baselines follow).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from spanline.simulator.scenarios import SCENARIOS, Scenario

#: Knobs and their neutral values (the traffic model's baseline draws).
NEUTRAL: dict[str, float] = {
    "server_error": 0.0,  # extra probability that an attempt on the target fails with a 5xx
    "rate_limited": 0.0,  # extra probability that an attempt is answered 429
    "output_factor": 1.0,  # visible output tokens multiplied
    "traffic_factor": 1.0,  # the target's request rate multiplied
    "ttft_factor": 1.0,  # time to first token multiplied
    "tool_error": 0.0,  # extra error probability of the agent's search_web tool
    "canary_recall": -1.0,  # per-document recall of the target index's canaries (-1 = baseline)
    "large_share": -1.0,  # share of routed calls sent to the large tier (-1 = baseline)
    "exact_hit": -1.0,  # exact-cache hit rate (-1 = baseline)
    "model_response": 0.0,  # n > 0 = the target model answers under new version name n
}


@dataclass(frozen=True, kw_only=True)
class Overlay:
    """One injected incident. ``scenario`` names the registry entry whose page it must raise;
    None = it must page nothing. ``ramp`` = the knobs grow linearly from neutral over the window."""

    name: str
    start: datetime
    duration: timedelta
    knobs: dict[str, float]
    tenant: int | None = None
    feature: str | None = None
    provider: str | None = None
    index: str | None = None
    scenario: str | None = None
    ramp: bool = False
    #: Rules this overlay may page besides the scenario's (e.g. an overlapping incident's).
    also_fires: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if unknown := set(self.knobs) - set(NEUTRAL):
            raise ValueError(f"overlay {self.name!r}: unknown knob(s) {sorted(unknown)}; known: {sorted(NEUTRAL)}")
        if self.scenario is not None and self.scenario not in SCENARIOS:
            raise ValueError(f"overlay {self.name!r}: unknown scenario {self.scenario!r}")

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    @property
    def expected(self) -> Scenario | None:
        return SCENARIOS[self.scenario] if self.scenario else None

    def strength(self, epoch_ms: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """0 outside the window, 1 inside (or the ramp's 0 → 1), per arrival time."""
        start_ms = self.start.timestamp() * 1000.0
        span_ms = self.duration.total_seconds() * 1000.0
        inside = (epoch_ms >= start_ms) & (epoch_ms < start_ms + span_ms)
        level = (epoch_ms - start_ms) / span_ms if self.ramp else np.ones_like(epoch_ms)
        return np.where(inside, level, 0.0)


def knob(
    overlays: tuple[Overlay, ...],
    name: str,
    epoch_ms: npt.NDArray[np.float64],
    tenant: npt.NDArray[np.int64],
    feature: npt.NDArray[np.object_],
    provider: npt.NDArray[np.object_] | None = None,
    index: npt.NDArray[np.object_] | None = None,
) -> npt.NDArray[np.float64]:
    """The knob's value per row: neutral, or the value of the last overlay touching the row."""
    neutral = NEUTRAL[name]
    value = np.full(len(epoch_ms), neutral)
    for overlay in overlays:
        if name not in overlay.knobs:
            continue
        hit = overlay.strength(epoch_ms)
        if overlay.tenant is not None:
            hit = np.where(tenant == overlay.tenant, hit, 0.0)
        if overlay.feature is not None:
            hit = np.where(feature == overlay.feature, hit, 0.0)
        if overlay.provider is not None and provider is not None:
            hit = np.where(provider == overlay.provider, hit, 0.0)
        if overlay.index is not None and index is not None:
            hit = np.where(index == overlay.index, hit, 0.0)
        target = overlay.knobs[name]
        start = neutral if neutral >= 0 else target  # "-1 = baseline" knobs have no neutral to ramp from
        value = np.where(hit > 0, start + (target - start) * hit, value)
    return value


#: Event time between one incident's end and the next one's start: every rule's window and
#: keep_firing_for drain, and a late page still falls in its own incident's grace (40 minutes).
GAP = timedelta(minutes=50)
#: Event time replayed after the last incident ends: the slowest page (an hourly window) has come.
TAIL = timedelta(minutes=30)


def incident_plan(
    first_at: datetime, until: datetime, names: tuple[str, ...] = (), gap: timedelta = GAP
) -> tuple[Overlay, ...]:
    """The evaluation's incidents, one after another from ``first_at`` (each ``gap`` after the
    previous one's end) while one ends ``TAIL`` before ``until``; the list repeats, and its
    ~16-hour cycle moves each kind through the hours of the day and the days of the week.
    ``names`` keeps only those kinds, in that order (all by default). The target is the largest tenant."""
    known = {str(t["name"]): t for t in _templates()}
    if unknown := set(names) - set(known):
        raise ValueError(f"unknown incident(s) {sorted(unknown)}; known: {', '.join(known)}")
    templates = [known[name] for name in names] if names else list(known.values())
    plan: list[Overlay] = []
    at = first_at
    while templates:
        for template in templates:
            duration = template["duration"]
            assert isinstance(duration, timedelta)
            if at + duration + TAIL > until:
                return tuple(plan)
            fields = {name: value for name, value in template.items() if name != "offset"}
            knobs = fields["knobs"]
            assert isinstance(knobs, dict)
            if "model_response" in knobs:  # each release a version never seen before, as a provider's are
                fields["knobs"] = {**knobs, "model_response": float(1 + sum(o.name == template["name"] for o in plan))}
            offset = template.get("offset", timedelta(0))
            assert isinstance(offset, timedelta)
            plan.append(Overlay(start=at + offset, **fields))  # type: ignore[arg-type]
            if template["name"] == "tool-storm":  # overlapping: 429s blip for 20 s inside the storm
                plan.append(_blip_429(at + timedelta(minutes=4, seconds=50)))
            at += duration + gap
    return tuple(plan)


def _blip_429(at: datetime) -> Overlay:
    return Overlay(
        name="blip-20s-429", start=at, duration=timedelta(seconds=20), provider="openai", knobs={"rate_limited": 1.0}
    )


def _templates() -> list[dict[str, object]]:
    """The incident kinds, in replay order. Blips straddle a minute boundary (``offset`` from
    the whole minute the plan is at): at minute grain a 20-second wall of 429s then looks like two
    minutes of a storm, the case a burn-rate tier's ``sustained`` slots are for."""
    minutes = timedelta(minutes=1)
    templates: list[dict[str, object]] = [
        {
            "name": "provider-outage",
            "duration": 20 * minutes,
            "provider": "anthropic",
            "knobs": {"server_error": 0.85},
            "scenario": "provider-outage",
        },
        {
            "name": "blip-30s-outage",
            "duration": timedelta(seconds=30),
            "offset": timedelta(seconds=45),
            "provider": "anthropic",
            "knobs": {"server_error": 1.0},
        },
        {
            "name": "rate-limit-storm",
            "duration": 20 * minutes,
            "tenant": 0,
            "provider": "openai",
            "knobs": {"rate_limited": 0.15},
            "scenario": "rate-limit-storm",
        },
        {
            "name": "drift-output-length",
            "duration": 90 * minutes,
            "tenant": 0,
            "knobs": {"output_factor": 1.3},
            "ramp": True,
        },
        {
            "name": "tool-storm",
            "duration": 20 * minutes,
            "tenant": 0,
            "feature": "agent",
            "knobs": {"tool_error": 0.4},
            "scenario": "tool-storm",
        },
        {
            "name": "latency-spike",
            "duration": 20 * minutes,
            "tenant": 0,
            "feature": "long-doc",
            "provider": "anthropic",
            "knobs": {"ttft_factor": 5.0},
            "scenario": "latency-spike",
        },
        {
            "name": "cost-output-length",
            "duration": 40 * minutes,
            "tenant": 0,
            "knobs": {"output_factor": 25.0},
            "scenario": "cost-output-length",
        },
        {
            "name": "index-corruption",
            "duration": 30 * minutes,
            "tenant": 0,
            "index": "kb",
            "knobs": {"canary_recall": 0.35},
            "scenario": "index-corruption",
        },
        {
            "name": "cost-traffic-volume",
            "duration": 40 * minutes,
            "tenant": 0,
            "knobs": {"traffic_factor": 6.0},
            "scenario": "cost-traffic-volume",
        },
        {
            "name": "cost-routing-shift",
            "duration": 30 * minutes,
            "tenant": 0,
            "feature": "chat",
            "knobs": {"large_share": 0.8},
            "scenario": "cost-routing-shift",
        },
        {
            "name": "cost-cache-collapse",
            "duration": 30 * minutes,
            "tenant": 0,
            "feature": "chat",
            "knobs": {"exact_hit": 0.005},
            "scenario": "cost-cache-collapse",
        },
        {
            "name": "model-version-change",
            "duration": 30 * minutes,
            "provider": "openai",
            "knobs": {"model_response": 1.0},
            "scenario": "model-version-change",
        },
    ]
    return templates
