"""Every incident scenario pages exactly what its registry entry says; 24 h of baseline pages nothing.

The fast faithful path (tests/support/replay.py): the scenario's spans become the worker's stored
rows (``process_batch``), are aggregated per minute by the windows package's own ``aggregate`` into
``MinuteFigures`` and fed minute by minute to the real evaluator, whose baselines were bootstrapped
from closed hours of baseline traffic the way a fresh worker loads ``spans_hour``. Kafka, the worker
process and ClickHouse are exercised end to end in tests/test_alert_e2e.py. The replays run side by
side in worker processes, one per core; each test checks its own replay's events.
"""

from __future__ import annotations

import copy
import functools
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from spanline.alerts.evaluator import Evaluator
from spanline.alerts.events import AlertEvent
from spanline.alerts.rules import Rule, load_rules
from spanline.contracts import load_contracts
from spanline.simulator.scenarios import SCENARIOS, get_scenario, rate_for
from spanline.simulator.workload import generate_traces
from spanline.streams.pricing import PriceCatalog
from tests.support.replay import hour_frame, minute_figures, replay, stored_rows

pytestmark = pytest.mark.scenarios  # hours of traffic through the evaluator: minutes of CPU

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
#: Two tenants: the largest (every scenario's target) carries enough traffic for each rule's
#: minimum-traffic guard at a modest replay rate.
TENANTS = ("acme", "globex")
RATE = 5.0
#: Evals are a 5% sample: the eval rules' 500 evals per 30 minutes need the target tenant alone at
#: a higher rate (as in tests/test_scenarios.py).
TRAFFIC = {"eval-regression": (15.0, TENANTS[:1])}
#: Closed hours of baseline before the replay: the 3 h every baseline's ``min_hours`` asks for.
HISTORY_HOURS = 3
#: Quiet minutes before the incident (the windows fill with replayed minutes first).
INCIDENT_AT_MIN = 10
INCIDENT_MINUTES = 20
#: The 24 h baseline: hours before this are bootstrapped, the rest evaluated minute by minute.
EVALUATED_FROM_H = 16.0
RULES = {rule.name: rule for rule in load_rules()}
INCIDENTS = [name for name, scenario in SCENARIOS.items() if not scenario.is_baseline]


#: The 24 h baseline's key among the replays (scenario names are the others).
DAY = "24h-baseline"
#: Replays run side by side in worker processes: each is single-threaded Python (the evaluator).
PROCESSES = max(1, min(os.cpu_count() or 1, 4))


@functools.cache
def price_catalog() -> PriceCatalog:
    return PriceCatalog.load()


@functools.cache
def bootstrapped(rate: float, tenants: tuple[str, ...]) -> Evaluator:
    """An evaluator after a fresh worker's bootstrap: closed hours of noisy baseline before START
    (baselines) whose last minutes are kept for diagnoses, at the replay's rate and tenants
    (built once per traffic shape and process; each replay works on a copy)."""
    history = get_scenario("baseline").workload(
        start=START - timedelta(hours=HISTORY_HOURS),
        hours=HISTORY_HOURS,
        requests_per_s=rate,
        seed=11,
        tenants=tenants,
    )
    rows = stored_rows(generate_traces(history), price_catalog())
    evaluator = Evaluator(load_rules(), load_contracts())
    assert evaluator.learn_hours(hour_frame(rows)) > 0
    for figures in minute_figures(rows):  # the bootstrap's spans_minute read, for diagnoses
        evaluator.remember(figures.minute, figures.frame)
    return evaluator


def tail_minutes(rule: Rule) -> int:
    """Event time after the incident for the rule to clear: its window drains, then keep_firing_for."""
    return int((rule.window + rule.keep_firing_for) / timedelta(minutes=1)) + 2


def replay_scenario(name: str) -> list[AlertEvent]:
    """Every alert event of the scenario's traffic (runs in a worker process)."""
    scenario = SCENARIOS[name]
    rule = RULES[scenario.expected_rule]
    rate, tenants = TRAFFIC.get(scenario.name, (RATE, TENANTS))
    hours = (INCIDENT_AT_MIN + INCIDENT_MINUTES + tail_minutes(rule)) / 60.0
    config = scenario.workload(
        start=START,
        hours=hours,
        requests_per_s=rate,
        seed=5,
        tenants=tenants,
        incident_at_min=INCIDENT_AT_MIN,
        incident_minutes=INCIDENT_MINUTES,
    )
    evaluator = copy.deepcopy(bootstrapped(rate, tenants))
    return replay(evaluator, minute_figures(stored_rows(generate_traces(config), price_catalog())))


@dataclass(frozen=True)
class DayReplay:
    spans: int
    events: list[AlertEvent]
    last_minute: datetime | None
    seconds: float


def replay_day() -> DayReplay:
    """24 simulated hours at the low rate ``rate_for`` gives (~240k spans with four tenants). The
    first EVALUATED_FROM_H hours bootstrap the baselines as closed hours (a worker starting on two thirds of
    a day of ClickHouse history); the rest is evaluated minute by minute: the evaluator's ~0.25 s
    of CPU per minute (bench/evaluator_minutes.py) makes a whole day of minutes too slow for CI
    (runs in a worker process)."""
    hours = 24.0
    config = get_scenario("baseline").workload(
        start=START, hours=hours, requests_per_s=rate_for(hours), seed=3, tenants=TENANTS
    )
    started = time.perf_counter()
    rows = stored_rows(generate_traces(config), price_catalog())
    evaluator = Evaluator(load_rules(), load_contracts())
    boot = (rows["start_time"] < pd.Timestamp(START + timedelta(hours=EVALUATED_FROM_H))).to_numpy()
    assert evaluator.learn_hours(hour_frame(rows[boot].reset_index(drop=True))) > 0
    events = replay(evaluator, minute_figures(rows[~boot].reset_index(drop=True)))
    return DayReplay(len(rows), events, evaluator.last_minute, time.perf_counter() - started)


@pytest.fixture(scope="module")
def replays(request: pytest.FixtureRequest) -> Iterator[dict[str, Future[Any]]]:
    """The selected tests' replays, started at once in PROCESSES spawned processes (the longest,
    the day, first); each test waits for its own."""
    wanted = {
        item.callspec.params["name"] if hasattr(item, "callspec") else DAY
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.module is request.module
    }
    with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures: dict[str, Future[Any]] = {}
        if DAY in wanted:
            futures[DAY] = pool.submit(replay_day)
        for name in INCIDENTS:
            if name in wanted:
                futures[name] = pool.submit(replay_scenario, name)
        yield futures


@pytest.mark.parametrize("name", INCIDENTS)
def test_scenario_pages_exactly_its_expected_alert_and_resolves(name: str, replays: dict[str, Future[Any]]) -> None:
    scenario = SCENARIOS[name]
    rule = RULES[scenario.expected_rule]
    events: list[AlertEvent] = replays[name].result()
    incident_start = START + timedelta(minutes=INCIDENT_AT_MIN)
    incident_end = incident_start + timedelta(minutes=INCIDENT_MINUTES)
    listing = "\n".join(f"{e.at:%H:%M} {e.state} {e.rule} {e.scope} {e.runbook_branch}" for e in events)

    unexpected = {e.rule for e in events} - {rule.name, *scenario.also_fires}
    assert not unexpected, f"{name}: unexpected alerts {unexpected}:\n{listing}"
    pages = [e for e in events if e.rule == rule.name and e.state == "firing"]
    # one page = one notification group (a rule grouped by provider pages once for all its models)
    assert len(pages) >= 1 and len({e.group_key for e in pages}) == 1, (
        f"{name}: expected one {rule.name} page:\n{listing}"
    )
    expected = scenario.scope(TRAFFIC.get(name, (RATE, TENANTS))[1])
    for page in pages:  # the scope the incident pins, on the dimensions the rule scopes by
        assert {d: v for d, v in page.scope.items() if d in expected} == {
            d: expected[d] for d in rule.scope if d in expected
        }, listing
        assert (page.runbook, page.runbook_branch) == (scenario.expected_runbook, scenario.expected_branch), (
            f"{name}: {page.runbook}/{page.runbook_branch}; diagnosis {page.diagnosis}"
        )
    page = pages[0]
    delay = page.at - incident_start
    # A windowed condition crosses at the latest once its window lies inside the incident; then `for`.
    assert timedelta(0) < delay <= rule.for_ + rule.window + timedelta(seconds=60), f"{name}: paged after {delay}"
    paged = {e.dedup_key for e in pages}
    resolves = [e for e in events if e.dedup_key in paged and e.state == "resolved"]
    assert len(resolves) == len(paged) and all(e.at > incident_end for e in resolves), (
        f"{name}: not every page resolved after the incident:\n{listing}"
    )
    print(
        f"{name}: {rule.name} branch {page.runbook_branch} paged {delay.total_seconds():.0f} s after the "
        f"incident started, resolved {(max(e.at for e in resolves) - incident_end).total_seconds():.0f} s after it "
        f"ended; also fired: {sorted({e.rule for e in events} - {rule.name}) or 'nothing'}"
    )


def test_24h_of_noisy_diurnal_baseline_pages_nothing(replays: dict[str, Future[Any]]) -> None:
    day: DayReplay = replays[DAY].result()
    assert day.events == [], "\n".join(f"{e.at:%H:%M} {e.state} {e.summary}" for e in day.events)
    assert day.last_minute is not None and day.last_minute >= START + timedelta(hours=24, minutes=-1), (
        "not every minute was evaluated"
    )
    print(
        f"24 h baseline: {day.spans:,} spans, {(24 - EVALUATED_FROM_H) * 60:.0f} minutes evaluated, "
        f"0 pages in {day.seconds:.0f} s"
    )
