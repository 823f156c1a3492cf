"""A registered incident scenario through the real pipeline: `spanline simulate --scenario
rate-limit-storm` → receiver → Kafka → worker (windows → merger → evaluator) → a loopback
PagerDuty Events API v2 stand-in. Exactly one trigger (the provider's 429 storm, grouped over its
models) with the scenario's rule, runbook and branch, then its resolve."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from spanline.simulator.scenarios import get_scenario
from tests.support.loopback import LoopbackServer
from tests.support.stack import Stack
from tests.test_alert_notifiers import ROUTING_KEY, pagerduty_problems

pytestmark = pytest.mark.e2e

SCENARIO = get_scenario("rate-limit-storm")
RUNBOOKS = "https://oncall.example.com/runbooks"  # SPANLINE_RUNBOOK_BASE_URL overrides the receiver's own
#: Simulated minutes: over an hour first (the rule's 429 baseline needs a closed hour), the storm,
#: then its windows and 10-minute keep_firing_for for the resolve. The rate gives each OpenAI model
#: the rule's 150 calls per 3 minutes.
HOURS, INCIDENT_AT_MIN, INCIDENT_MINUTES, RATE = 1.6, 62.0, 10.0, 6.0


def storm_pages(pagerduty: LoopbackServer) -> list[dict[str, Any]]:
    """The pages of the scenario's rule. Its event time follows the wall clock, so the 1.6 h of
    baseline around it fall at another time of day in every run; whether that baseline pages
    nothing is tests/test_alert_scenarios.py's question (24 h, fixed times), not this one's."""
    return [b for b in pagerduty.received if b["dedup_key"].startswith(f"{SCENARIO.expected_rule}/")]


def expected_branch(diagnosis: dict[str, Any]) -> str:
    """The scenario's branch (a quota storm: first attempts steady), unless the page's own figures
    show a significant surge: first attempts ≥ 1.5× the reference and 3 standard errors above it
    (alerts/runbooks/rate-limits.md). The simulator draws one noise factor per simulated minute,
    so a model's traffic can rise by chance; the branch choice itself is pinned by
    tests/test_alert_scenarios.py and tests/test_alert_significance.py."""
    attempts = diagnosis["first_attempts_per_min"]
    surge = attempts["now"] >= 1.5 * attempts["before"] and diagnosis["traffic_change_z"] >= 3
    return "traffic_surge" if surge else SCENARIO.expected_branch


def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Validate like the Events API (400 with the problems), else 202 as PagerDuty answers."""
    problems = pagerduty_problems(body)
    if problems:
        return 400, {"status": "invalid event", "errors": problems}
    return 202, {"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]}


@pytest.fixture
def pagerduty() -> Iterator[LoopbackServer]:
    server = LoopbackServer("/v2/enqueue", answer)
    yield server
    server.close()


def test_a_rate_limit_storm_pages_pagerduty_once_with_its_branch_and_resolves(
    tansu_kafka: Any, pagerduty: LoopbackServer, tmp_path: Any
) -> None:
    stack = Stack(tansu_kafka.bootstrap_servers, tmp_path)
    try:
        stack.start_worker(
            {
                "SPANLINE_ALERT_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
                "SPANLINE_ALERT_PAGERDUTY_URL": pagerduty.url,
                "SPANLINE_ALERT_GROUP_WAIT_S": "0",
                "SPANLINE_RUNBOOK_BASE_URL": RUNBOOKS,
                "SPANLINE_WINDOW_IDLE_S": "3",
            }
        )
        stack.start_receiver()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPANLINE_")} | stack.env
        started = time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "spanline",
                "simulate",
                "--scenario",
                SCENARIO.name,
                "--hours",
                str(HOURS),
                "--rate",
                str(RATE),
                "--incident-at",
                str(INCIDENT_AT_MIN),
                "--incident-minutes",
                str(INCIDENT_MINUTES),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        sent = time.monotonic()
        assert result.returncode == 0, result.stdout + result.stderr
        stack.wait_until(
            lambda: any(b["event_action"] == "resolve" for b in storm_pages(pagerduty)), 240, "the storm's resolve"
        )
    finally:
        stack.close()

    actions = [(b["event_action"], b["dedup_key"]) for b in storm_pages(pagerduty)]
    key = f"{SCENARIO.expected_rule}/provider=openai"
    assert actions == [("trigger", key), ("resolve", key)], actions
    trigger = storm_pages(pagerduty)[0]
    details = trigger["payload"]["custom_details"]
    assert details["rule"] == SCENARIO.expected_rule and details["scope"]["provider"] == "openai"
    branch = expected_branch(details["diagnosis"])
    assert (details["runbook"], details["runbook_branch"]) == (SCENARIO.expected_runbook, branch), details["diagnosis"]
    assert trigger["payload"]["class"] == branch
    assert trigger["links"][0]["href"] == f"{RUNBOOKS}/{SCENARIO.expected_runbook}#{branch}"  # the override
    page_delay = pagerduty.arrived[pagerduty.received.index(trigger)] - sent
    print(
        f"simulate sent {HOURS} h of traffic in {sent - started:.1f} s; PagerDuty trigger {page_delay:.1f} s "
        f"after the last (incident and after) minutes were sent"
    )
