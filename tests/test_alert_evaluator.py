"""The evaluator on synthetic minutes: lifecycle, no pages on noisy baseline traffic, and each
failure mode paging the right rule with the right runbook branch (docs/requirements.md §5)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spanline.alerts.evaluator import Evaluator
from spanline.alerts.events import AlertEvent
from spanline.alerts.rules import load_rules
from spanline.contracts import load_contracts
from tests.support.alert_frames import Knobs, diurnal, hour_frame, minute_frame

START = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
HISTORY_HOURS = 8
WARMUP_MINUTES = 8
REMEMBERED_MINUTES = 60


@dataclass(frozen=True)
class Minute:
    minute: datetime
    frame: pd.DataFrame


def learned(rng: np.random.Generator) -> Evaluator:
    """An evaluator with 8 closed hours of noisy diurnal history before START and the last hour's
    minutes kept for diagnoses and spend noise (as after bootstrap, which reads them from
    spans_minute; their own generator, so the tests' draws stay as they were)."""
    evaluator = Evaluator(load_rules(), load_contracts())
    hours = [
        hour_frame(h, rng, diurnal(Knobs(), h, rng))
        for h in (START - timedelta(hours=n) for n in range(HISTORY_HOURS, 0, -1))
    ]
    assert evaluator.learn_hours(pd.concat(hours, ignore_index=True)) > 0
    recent = np.random.default_rng(99)
    for minute in (START - timedelta(minutes=n) for n in range(REMEMBERED_MINUTES, 0, -1)):
        evaluator.remember(minute, minute_frame(minute, recent, diurnal(Knobs(), minute, recent)))
    return evaluator


def test_a_fresh_worker_judges_a_burn_rate_tier_only_over_its_whole_window() -> None:
    """Right after a start, 3 minutes at 15% are not a 15-minute burn of 10%: no high page until
    the 15 minutes were watched (issue 16: the demo paged high, then critical a minute later)."""
    rng = np.random.default_rng(4)
    evaluator = learned(rng)
    events = run(evaluator, rng, START, 14, replace(Knobs(), error_rate=0.15), {"provider": "anthropic"})
    assert fired(events, "error_rate") == []
    events = run(
        evaluator, rng, START + timedelta(minutes=14), 3, replace(Knobs(), error_rate=0.15), {"provider": "anthropic"}
    )
    assert [e.severity for e in fired(events, "error_rate")] == ["high"]


def run(
    evaluator: Evaluator,
    rng: np.random.Generator,
    start: datetime,
    minutes: int,
    incident: Knobs | None = None,
    where: dict[str, str] | None = None,
) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    for n in range(minutes):
        minute = start + timedelta(minutes=n)
        frame = minute_frame(
            minute,
            rng,
            diurnal(Knobs(), minute, rng),
            where=where,
            incident=None if incident is None else diurnal(incident, minute, rng),
        )
        events.extend(evaluator.evaluate(Minute(minute, frame)))
    return events


def scenario(
    incident: Knobs, where: dict[str, str] | None, minutes: int = 15, seed: int = 3
) -> tuple[Evaluator, list[AlertEvent], datetime]:
    rng = np.random.default_rng(seed)
    evaluator = learned(rng)
    quiet = run(evaluator, rng, START, WARMUP_MINUTES)
    assert quiet == [], [e.summary for e in quiet]
    incident_start = START + timedelta(minutes=WARMUP_MINUTES)
    return evaluator, run(evaluator, rng, incident_start, minutes, incident, where), incident_start


def fired(events: list[AlertEvent], rule: str) -> list[AlertEvent]:
    return [e for e in events if e.rule == rule and e.state == "firing"]


def test_noisy_diurnal_baseline_pages_nothing() -> None:
    rng = np.random.default_rng(11)
    evaluator = learned(rng)
    events = run(evaluator, rng, START, 45)
    assert events == [], [e.summary for e in events]


def test_provider_outage_is_one_critical_alert_per_model_grouped_by_provider_and_resolves() -> None:
    evaluator, events, start = scenario(replace(Knobs(), error_rate=0.7), {"provider": "anthropic"}, minutes=10)
    pages = fired(events, "error_rate")
    assert [(e.scope, e.severity) for e in pages] == [
        ({"provider": "anthropic", "model_requested": "claude-3-5-sonnet"}, "critical")
    ]  # one rule: the burn rate sets the severity, no second (high) page for the same outage
    page = pages[0]
    assert page.group == {"provider": "anthropic"} and page.runbook == "provider-outage"
    assert page.runbook_branch == "provider_errors" and page.diagnosis["top_error_type"] == "server_error"
    assert page.at - start <= timedelta(minutes=2)
    assert page.dedup_key == "error_rate/model_requested=claude-3-5-sonnet/provider=anthropic"
    rng = np.random.default_rng(5)
    after = run(evaluator, rng, start + timedelta(minutes=10), 15)
    resolved = [e for e in after if e.state == "resolved"]
    assert [(e.rule, e.dedup_key) for e in resolved] == [("error_rate", page.dedup_key)]
    assert not fired(after, "error_rate")


def test_a_30_second_full_outage_never_pages() -> None:
    """A provider failing every call for 30 s: half of one minute, or a quarter of two. The
    2-minute window holds at most 25% failed first attempts, below the critical tier's 30%, and
    the 15-minute window a few percent: no page at any severity (issue 16: it paged high)."""
    for minutes in ([0.5], [0.25, 0.25]):
        rng = np.random.default_rng(7)
        evaluator = learned(rng)
        events = run(evaluator, rng, START, 16)  # every tier's long window watched
        blip_start = START + timedelta(minutes=16)
        for n, rate in enumerate(minutes):
            events += run(
                evaluator,
                rng,
                blip_start + timedelta(minutes=n),
                1,
                replace(Knobs(), error_rate=rate),
                {"provider": "anthropic"},
            )
        events += run(evaluator, rng, blip_start + timedelta(minutes=len(minutes)), 20)
        assert fired(events, "error_rate") == [], [e.summary for e in events]


@pytest.mark.parametrize("rate", [0.5, 0.85])
def test_a_sustained_outage_of_half_the_calls_pages_critical_within_2_event_minutes(rate: float) -> None:
    _, events, start = scenario(replace(Knobs(), error_rate=rate), {"provider": "anthropic"}, minutes=4)
    pages = fired(events, "error_rate")
    assert pages and pages[0].severity == "critical"
    assert pages[0].at - start <= timedelta(minutes=2), pages[0].at - start


def test_a_partial_outage_pages_high_and_escalates_the_same_incident_to_critical() -> None:
    rng = np.random.default_rng(9)
    evaluator = learned(rng)
    assert run(evaluator, rng, START, WARMUP_MINUTES) == []
    start = START + timedelta(minutes=WARMUP_MINUTES)
    where = {"provider": "anthropic"}
    events = run(evaluator, rng, start, 16, replace(Knobs(), error_rate=0.15), where)
    events += run(evaluator, rng, start + timedelta(minutes=16), 3, replace(Knobs(), error_rate=0.6), where)
    pages = fired(events, "error_rate")
    assert [e.severity for e in pages] == ["high", "critical"]
    assert len({e.dedup_key for e in pages}) == 1 and pages[1].started_at == pages[0].started_at
    assert pages[0].at - start >= timedelta(minutes=7)  # 15% pages once the 15-minute window is watched
    assert pages[1].diagnosis["error_rate"]["now"] == pytest.approx(pages[1].value, rel=1e-3)  # tier's window


def test_latency_spike_from_long_inputs_points_to_the_input_cap_branch() -> None:
    incident = replace(Knobs(), ttft_ms=1600.0, input_tokens=9000.0)
    _, events, start = scenario(incident, {"tenant_id": "acme", "feature": "support-chat"})
    spike = fired(events, "latency_spike")
    assert [e.scope for e in spike] == [{"tenant_id": "acme", "feature": "support-chat"}]
    assert spike[0].runbook_branch == "long_inputs"
    assert spike[0].diagnosis["input_tokens_p99"]["now"] > 3 * spike[0].diagnosis["input_tokens_p99"]["before"]
    assert spike[0].at - start <= timedelta(minutes=10)


def test_latency_spike_on_one_provider_names_it() -> None:
    _, events, _ = scenario(replace(Knobs(), ttft_ms=2500.0), {"provider": "anthropic", "tenant_id": "globex"})
    spike = fired(events, "latency_spike")
    assert spike and {e.scope["tenant_id"] for e in spike} == {"globex"}
    # one slow provider under every feature is one incident: one notification group (issue 16)
    assert len({e.scope["feature"] for e in spike}) > 1 and {e.group_key for e in spike} == {"latency_spike"}
    assert all(e.runbook_branch == "provider_endpoint" for e in spike)
    assert spike[0].diagnosis["slowest_provider_model"]["provider"] == "anthropic"


@pytest.mark.parametrize(
    ("incident", "branch"),
    [
        (replace(Knobs(), output_tokens=4500.0, prompt_version="v7"), "output_length"),
        (replace(Knobs(), requests=1500.0), "traffic_volume"),
    ],
    ids=["output_length", "traffic_volume"],
)
def test_cost_spike_diagnosis_names_the_branch_and_top_contributors(incident: Knobs, branch: str) -> None:
    _, events, start = scenario(incident, {"tenant_id": "acme"})
    spike = fired(events, "cost_spike_hourly")
    # per feature, one notification group per tenant
    assert {e.scope["tenant_id"] for e in spike} == {"acme"} and {e.group_key for e in spike} == {
        "cost_spike_hourly/tenant_id=acme"
    }
    page = spike[0]
    assert page.runbook == "cost-spike" and page.runbook_branch == branch
    shares = page.diagnosis["spend_change_share"]
    assert max(shares, key=shares.get) == branch and sum(shares.values()) == pytest.approx(1, abs=1e-4)
    top = page.diagnosis["top_contributors"]
    assert top["tenant_id"]["key"] == "acme" and top["model_requested"]["key"] == "claude-3-5-sonnet"
    if branch == "output_length":
        assert top["prompt_version"]["key"].endswith("@v7")
    assert page.at - start <= timedelta(minutes=10)


def test_cache_collapse_names_the_layer_and_routing_shift_the_reason() -> None:
    _, events, _ = scenario(replace(Knobs(), cache_hit_rate=0.04), {"tenant_id": "globex", "feature": "support-chat"})
    collapse = fired(events, "cache_collapse")
    assert [e.scope for e in collapse] == [{"tenant_id": "globex", "feature": "support-chat"}]
    assert collapse[0].runbook_branch in {"exact_layer", "semantic_layer"}
    hit_rate = collapse[0].diagnosis["cache_hit_rate"]
    assert hit_rate["now"] == pytest.approx(collapse[0].value, rel=1e-3)  # the rule's own 10 minutes
    assert hit_rate["now"] < 0.8 * hit_rate["before"]
    _, events, _ = scenario(replace(Knobs(), large_share=0.7), {"tenant_id": "acme", "feature": "code-agent"}, 22)
    shift = fired(events, "routing_shift")
    assert [e.scope for e in shift] == [{"tenant_id": "acme", "feature": "code-agent"}]
    assert shift[0].runbook == "cost-spike" and shift[0].runbook_branch == "routing_escalation"


def test_tool_storm_names_the_tool_and_error_type() -> None:
    incident = replace(Knobs(), tool_error_rate=0.3, steps_per_trace=6.0, failing_tool="sql_query")
    _, events, _ = scenario(incident, {"tenant_id": "acme", "feature": "code-agent"})
    storm = fired(events, "tool_call_storm")
    assert [e.scope for e in storm] == [{"tenant_id": "acme", "feature": "code-agent"}]
    diagnosis = storm[0].diagnosis
    assert storm[0].runbook_branch == "single_tool" and diagnosis["tool"] == "sql_query"
    assert diagnosis["top_error_type"] == "timeout"
    assert diagnosis["steps_per_trace"]["now"] > 1.5 * diagnosis["steps_per_trace"]["before"]


def test_index_corruption_and_embedding_mismatch_branches() -> None:
    _, events, _ = scenario(replace(Knobs(), recall=0.3), {"tenant_id": "globex"}, minutes=20)
    corruption = fired(events, "index_corruption")
    assert [e.scope for e in corruption] == [{"tenant_id": "globex", "index_name": "globex-docs"}]
    assert corruption[0].runbook_branch == "recall_drop"
    _, events, _ = scenario(replace(Knobs(), mismatch_share=0.5), {"tenant_id": "acme", "feature": "support-chat"}, 5)
    mismatch = fired(events, "embedding_mismatch")
    assert [e.scope for e in mismatch] == [{"tenant_id": "acme", "feature": "support-chat"}]
    assert mismatch[0].runbook == "index-corruption" and mismatch[0].runbook_branch == "embedding_mismatch"


def test_a_new_model_version_is_a_low_severity_annotation() -> None:
    _, events, _ = scenario(replace(Knobs(), model_response="gpt-4o-mini-2025-02-01"), {"provider": "openai"}, 5)
    change = fired(events, "model_version_change")
    assert [e.scope for e in change] == [{"provider": "openai", "model_requested": "gpt-4o-mini"}]
    assert change[0].severity == "low" and change[0].runbook == "silent-regression"
    assert change[0].diagnosis["new_model_responses"] == ["gpt-4o-mini-2025-02-01"]


def test_flapping_keeps_one_incident_and_restarts_neither_lose_nor_repeat_pages(tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    evaluator = learned(rng)
    outage, where = replace(Knobs(), error_rate=0.8), {"provider": "anthropic"}
    events = run(evaluator, rng, START, 8, outage, where)
    events += run(evaluator, rng, START + timedelta(minutes=8), 2)  # clears for less than keep_firing_for
    state = tmp_path / "alerts.state"
    evaluator.save(state)
    restarted = Evaluator(load_rules(), load_contracts())
    assert restarted.restore(state)
    replayed = START + timedelta(minutes=9)
    assert restarted.evaluate(Minute(replayed, minute_frame(replayed, rng))) == []  # already evaluated
    events += run(restarted, rng, START + timedelta(minutes=10), 6, outage, where)  # flaps back
    events += run(restarted, rng, START + timedelta(minutes=16), 12)  # clears for good
    pages = [e for e in events if e.rule == "error_rate"]
    assert [(e.state, e.severity) for e in pages] == [("firing", "critical"), ("resolved", "critical")]
    assert restarted.firing() == []


def test_pipeline_rules_read_the_worker_figures() -> None:
    evaluator = Evaluator([r for r in load_rules() if r.pipeline], load_contracts())
    rng = np.random.default_rng(1)
    events: list[AlertEvent] = []
    for n in range(12):
        minute = START + timedelta(minutes=n)
        letters = 400 if n >= 4 else 3
        silent = 1 if n >= 9 else 0  # a partition's windows stop arriving at minute 9
        pipeline = pd.DataFrame(
            [{"spans_in": 5000, "dead_letters": letters, "lag_s": 4.0, "silent_partitions": silent, "windows": 1}]
        )
        events += evaluator.evaluate(Minute(minute, minute_frame(minute, rng)), pipeline)
    assert [(e.rule, e.state, e.scope, e.runbook) for e in events] == [
        ("dlq_rate", "firing", {}, "pipeline-health"),
        ("alert_input_incomplete", "firing", {}, "pipeline-health"),
    ]
    assert events[0].value == pytest.approx(0.08, abs=0.01)
    assert events[1].at == START + timedelta(minutes=11) and events[1].value == 1.0


def test_a_page_and_its_diagnosis_read_the_same_minutes() -> None:
    """A two-minute outage pages critical from its 2-minute tier; the diagnosis shows the failure
    rate on the page (it reads the firing tier's window, not the rule's 15 minutes)."""
    rng = np.random.default_rng(11)
    evaluator = learned(rng)
    assert run(evaluator, rng, START, WARMUP_MINUTES) == []
    outage_start = START + timedelta(minutes=WARMUP_MINUTES)
    events = run(evaluator, rng, outage_start, 2, replace(Knobs(), error_rate=0.9), {"provider": "anthropic"})
    events += run(evaluator, rng, outage_start + timedelta(minutes=2), 4)
    pages = fired(events, "error_rate")
    assert pages, "a 90% outage for 2 minutes burns the 2% budget 45 times over the critical tier's window"
    for page in pages:
        assert page.diagnosis["error_rate"]["now"] == pytest.approx(page.value, rel=1e-3)
        assert page.diagnosis["top_error_type"] == "server_error"
