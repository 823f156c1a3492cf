"""``spanline evaluate-alerts``: the independent traffic model, the incident plan and the scoring.

The short replay runs the command itself (the CLI's parser, the model, ``process_batch``, the
windows' ``aggregate``, the real evaluator and dispatcher) and checks what its tables claim; the
scoring tests feed hand-made alert events to the scorer so each way of missing a target is seen.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from rich.table import Table

from spanline import cli
from spanline.alert_evaluation import WEEK_START, Page, missed_incident_list, pages_of, score
from spanline.alert_replay import Replay, stored_rows
from spanline.alerts.events import AlertEvent
from spanline.simulator.traffic_model import TrafficModel, seasonality
from spanline.simulator.traffic_overlays import Overlay, incident_plan
from spanline.streams.pricing import PriceCatalog

OUTAGE_AT = WEEK_START + timedelta(hours=3, minutes=20)


@pytest.mark.scenarios
def test_a_short_replay_pages_the_outage_once_and_never_the_blip(capsys: pytest.CaptureFixture[str]) -> None:
    """1 request/s, 3 learnt hours, then a 30-second full Anthropic outage and, 15 minutes later,
    an 85 % one for 20 minutes (about 90 evaluated minutes). tests/test_alert_blips.py covers the
    same incidents at 5 requests/s."""
    cli.main(
        [
            "evaluate-alerts",
            "--days",
            "0.1844",
            "--rates",
            "1",
            "--warmup-hours",
            "3",
            "--incidents",
            "blip-30s-outage,provider-outage",
            "--gap-minutes",
            "15",
        ]
    )  # returned: exit code 0 (a missed target exits 1, test_missed_targets_exit_1)
    out = capsys.readouterr().out
    assert re.search(r"all rules\s*│\s*0\s*│", out), out  # no false page
    rows = {
        line.split("│")[1].strip(): line.split("│")[3].strip() for line in out.splitlines() if line.startswith("│ ")
    }
    assert rows["blip-30s-outage"] == "quiet 1/1", out
    assert rows["provider-outage"].startswith("1/1/1 of 1"), out  # paged / paged once / right branch, of 1
    delay = re.search(r"(\d+) \(max", rows["provider-outage"])
    assert delay is not None and int(delay.group(1)) <= 3, out  # the critical tier: within ~2 event minutes
    assert "every target met" in out


def test_missed_targets_exit_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The command's exit code follows the scores (here a replay whose only page is a false one)."""
    plan = incident_plan(OUTAGE_AT, OUTAGE_AT + timedelta(hours=2), ("provider-outage",))
    false_page = _event("cost_spike_hourly", OUTAGE_AT - timedelta(hours=2), "cost-spike", "traffic_volume")

    def fake_evaluate(rates: list[float], days: float, **_: object) -> list[object]:
        return [
            score(Replay(rate, [false_page], WEEK_START, WEEK_START + timedelta(days=1), 1), plan, days)
            for rate in rates
        ]

    monkeypatch.setattr("spanline.alert_evaluation.evaluate", fake_evaluate)
    with pytest.raises(SystemExit) as exited:
        cli.main(["evaluate-alerts", "--days", "1", "--rates", "5"])
    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert re.search(r"cost_spike_hourly\s*│\s*1 \(1\.00/d\)", out), out
    assert "targets missed at 5 req/s" in out
    assert re.search(r"│ 5\s*│ Mon 01:20\s*│ cost_spike_hourly", out), out  # each false page is listed
    assert re.search(rf"│ 5\s*│ provider-outage\s*│ {OUTAGE_AT:%a %H:%M}\s*│ not paged", out), out  # each miss too


def test_scoring_counts_false_pages_repeats_and_wrong_branches() -> None:
    plan = incident_plan(OUTAGE_AT, OUTAGE_AT + timedelta(hours=2), ("provider-outage", "blip-30s-outage"))
    outage, blip = plan
    at = outage.start + timedelta(minutes=2)
    events = [
        _event("error_rate", at, "provider-outage", "provider_errors"),
        _event("error_rate", at + timedelta(minutes=1), "provider-outage", "provider_errors", model="haiku"),
        _event("retry_amplification", at, "retry-amplification", "retries"),  # a rule the scenario allows
        _event("cost_spike_hourly", outage.start - timedelta(minutes=30), "cost-spike", "traffic_volume"),
    ]
    result = score(Replay(5.0, events, WEEK_START, WEEK_START + timedelta(days=1), 1), plan, 1.0)
    outage_score, blip_score = result.incidents
    # the second model joins the open error_rate group: an update of the same page, not a new one
    assert outage_score.once and outage_score.right_branch and outage_score.delay_min == pytest.approx(2.08, abs=0.01)
    assert not blip_score.pages and blip_score.met
    assert list(result.false_pages) == ["cost_spike_hourly"] and not result.met

    resolved = _event("error_rate", at + timedelta(minutes=5), "provider-outage", "provider_errors", state="resolved")
    again = _event("error_rate", at + timedelta(minutes=9), "provider-outage", "provider_errors")
    wrong = _event("error_rate", at, "provider-outage", "fallback_errors")
    twice_scores = score(Replay(5.0, [events[0], resolved, again], WEEK_START, blip.end, 1), plan, 1.0)
    twice = twice_scores.incidents[0]
    assert twice.detected and not twice.once and not twice.met
    wrong_scores = score(Replay(5.0, [wrong], WEEK_START, blip.end, 1), plan, 1.0)
    assert not wrong_scores.incidents[0].right_branch
    listed = _text(missed_incident_list([twice_scores, wrong_scores]))
    assert re.search(r"provider-outage .* paged 2 times: error_rate \d\d:\d\d .*, error_rate", listed), listed
    assert "wrong branch: error_rate" in listed and "provider-outage → fallback_errors" in listed, listed
    blip_page = _event("error_rate", blip.start + timedelta(minutes=1), "provider-outage", "provider_errors")
    noisy = score(Replay(5.0, [blip_page], WEEK_START, blip.end, 1), plan, 1.0)
    assert not noisy.incidents[1].met and noisy.false_pages == {
        "error_rate": [
            Page(
                "error_rate",
                blip_page.at + timedelta(seconds=5),
                "provider-outage",
                "provider_errors",
                "provider=anthropic model_requested=sonnet",
            )
        ]
    }


def _text(table: Table) -> str:
    console = Console(width=240, record=True)
    console.print(table)
    return console.export_text()


def test_pages_follow_the_dispatcher_inhibition() -> None:
    """A provider's medium retry page waits behind its critical outage page and is dropped if it clears first."""
    at = OUTAGE_AT
    events = [
        _event("error_rate", at, "provider-outage", "provider_errors", severity="critical"),
        _event("retry_amplification", at, "retry-amplification", "retries", severity="medium"),
        _event("retry_amplification", at + timedelta(minutes=3), "", "", state="resolved", severity="medium"),
    ]
    assert [p.rule for p in pages_of(events)] == ["error_rate"]


def test_traffic_is_overdispersed_seasonal_heavy_tailed_and_valid() -> None:
    catalog = PriceCatalog.load()
    model = TrafficModel(start=WEEK_START, requests_per_s=5.0)
    night, afternoon = (pd.DataFrame(next(model.minutes(h * 60, 10))) for h in (4, 15))
    rows = stored_rows(next(model.minutes(15 * 60, 10)), catalog)  # every span passes the worker's validation
    assert len(rows) == len(afternoon) and rows["cost_usd"].sum() > 0
    assert (afternoon["kind"] == "request").sum() > 1.8 * (night["kind"] == "request").sum()
    saturday = WEEK_START.timestamp() + 5 * 86_400 + 15 * 3600
    assert seasonality(np.array([saturday]))[0] < 0.6 * seasonality(np.array([WEEK_START.timestamp() + 15 * 3600]))[0]
    peak = pd.concat(pd.DataFrame(chunk) for chunk in model.minutes(14 * 60, 120))  # the flat top of the day
    starts = pd.to_datetime(peak.loc[peak["kind"] == "request", "start_time"]).dt.floor("min")
    counts = starts.value_counts().to_numpy(dtype=float)
    assert len(counts) == 120 and counts.var() > 3 * counts.mean()  # a Poisson process: var ≈ mean
    llm = afternoon[(afternoon["kind"] == "llm") & (afternoon["feature"] == "long-doc") & (afternoon["status"] == "ok")]
    tokens = llm["input_tokens"].to_numpy()
    assert np.quantile(tokens, 0.99) > 5 * np.median(tokens)  # Pareto prompts
    canaries = afternoon[afternoon["eval_name"].eq("recall@5")]
    assert canaries.groupby("tenant_id")["index_name"].nunique().eq(3).all()
    assert set(afternoon["feature"]) == {"chat", "long-doc", "agent"}


def test_overlays_ramp_and_target() -> None:
    start = datetime(2026, 11, 2, 8, tzinfo=UTC)
    drift = Overlay(
        name="drift", start=start, duration=timedelta(minutes=100), tenant=0, knobs={"output_factor": 2.0}, ramp=True
    )
    at = np.array([start.timestamp() - 1, start.timestamp() + 50 * 60, start.timestamp() + 99 * 60]) * 1000.0
    assert drift.strength(at).round(2).tolist() == [0.0, 0.5, 0.99]
    with pytest.raises(ValueError, match="unknown knob"):
        Overlay(name="x", start=start, duration=timedelta(minutes=1), knobs={"nope": 1.0})
    with pytest.raises(ValueError, match="unknown incident"):
        incident_plan(start, start + timedelta(days=1), ("no-such-incident",))


def test_each_model_version_change_is_a_release_never_seen_before() -> None:
    """A repeated incident must be as new as the first: the rule pages a model_response unseen for
    7 days, so a second release under the first one's name could never page (1 of 10 in a week)."""
    first = WEEK_START + timedelta(hours=1)
    plan = incident_plan(first, first + timedelta(hours=2), ("model-version-change",), timedelta(minutes=15))
    assert [overlay.knobs["model_response"] for overlay in plan] == [1.0, 2.0]
    model = TrafficModel(start=WEEK_START, requests_per_s=5.0, overlays=plan)
    seen = []
    for overlay in plan:
        offset = round((overlay.start - WEEK_START) / timedelta(minutes=1)) + 5
        minutes = pd.DataFrame(next(model.minutes(offset, 5)))
        llm = minutes[(minutes["kind"] == "llm") & (minutes["status"] == "ok")]
        new = llm.loc[llm["model_response"].str.contains("preview"), ["provider", "model_response"]]
        assert set(new["provider"]) == {"openai"} and len(new) > 0
        seen.append(set(new["model_response"]))
    assert all(name.endswith("-preview.1") for name in seen[0]) and all(n.endswith("-preview.2") for n in seen[1])


def _event(
    rule: str,
    at: datetime,
    runbook: str,
    branch: str,
    *,
    state: str = "firing",
    severity: str = "high",
    model: str = "sonnet",
) -> AlertEvent:
    group = {"provider": "anthropic"}
    return AlertEvent(
        rule=rule,
        severity=severity,
        state=state,  # type: ignore[arg-type]
        at=at,
        started_at=at,
        dedup_key=f"{rule}/{model}",
        scope={**group, "model_requested": model},
        group=group,
        value=1.0,
        threshold=0.5,
        summary="",
        description="",
        runbook=runbook,
        runbook_branch=branch,
    )
