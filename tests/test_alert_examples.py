"""Alert pages carry example traces: a few of the worst traces in the incident's scope and window.

An outage on anthropic/claude-3-5-sonnet fires through the worker's alerting service on chDB,
where spans from the real pipeline path (generator -> process_batch) are stored, some of them
failed calls to that model inside the alert's window and one before it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr

from spanline.alerts.events import AlertEvent
from spanline.alerts.examples import example_rank, example_window
from spanline.alerts.notifiers import Notification, PagerDutyReceiver, SlackReceiver
from spanline.alerts.rules import load_rules
from spanline.simulator.workload import WorkloadConfig
from tests.support.chdb import migrated_chdb
from tests.support.rows import worker_rows
from tests.test_alert_evaluator import START, learned
from tests.test_alert_state import OUTAGE, minutes, service_for

DB = "alert_examples"
PROVIDER, MODEL = "anthropic", "claude-3-5-sonnet"
GRAFANA = "http://grafana.example:3000"


def test_each_rule_picks_examples_by_its_signal() -> None:
    ranks = {rule.name: example_rank(rule) for rule in load_rules()}
    assert ranks["latency_spike"] == ranks["latency_contract"] == "slowest"
    assert ranks["cost_spike_hourly"] == ranks["budget_overrun"] == ranks["cost_per_request_contract"] == "costliest"
    assert ranks["error_rate"] == ranks["tool_call_storm"] == "failed"
    assert ranks["rate_limiting"] == "retried"
    assert ranks["consumer_lag"] is None and ranks["dlq_rate"] is None  # the pipeline, not a request


def seeded_spans() -> pd.DataFrame:
    """20 minutes of traffic from START+40m; a third of the LLM calls go to the outage's model,
    half of those fail; one failed call to it comes before the alert's window."""
    rows = worker_rows(WorkloadConfig(start=START + timedelta(minutes=40), duration_s=20 * 60, requests_per_s=2))
    llm = np.flatnonzero(rows["kind"].eq("llm"))
    moved = rows.index[llm[::3]]
    rows.loc[moved, ["provider", "model_requested", "model_response"]] = [PROVIDER, MODEL, MODEL]
    failed = moved[::2]
    rows.loc[failed, ["status", "error_type"]] = ["error", "server_error"]
    early = rows.index[rows["start_time"] < pd.Timestamp(START + timedelta(minutes=42))]
    decoy = next(i for i in early if rows.at[i, "kind"] == "llm")
    rows.loc[decoy, ["provider", "model_requested", "status", "error_type"]] = [PROVIDER, MODEL, "error", "timeout"]
    return rows


def test_an_outage_page_carries_failed_traces_of_its_scope_and_window(tmp_path: Path) -> None:
    spans = seeded_spans()
    rng = np.random.default_rng(5)
    with migrated_chdb(tmp_path / "chdb", DB) as client:
        client.insert_df(f"{DB}.spans", spans, settings={"insert_deduplication_token": "examples-seed"})
        service = service_for(tmp_path, DB, client)
        service.evaluator = learned(rng)
        service._ready = True

        async def evaluate() -> list[AlertEvent]:
            events = []
            for minute in minutes(rng, START + timedelta(minutes=40), 10) + minutes(
                rng, START + timedelta(minutes=50), 10, OUTAGE
            ):
                events += await service._evaluate(minute)
            return events

        events = asyncio.run(evaluate())
        stored = client.query_df(
            f"SELECT dedup_key, example_trace_ids FROM {DB}.alerts WHERE rule = 'error_rate' AND state = 'firing'"
        )
    (page,) = [e for e in events if e.rule == "error_rate" and e.scope["model_requested"] == MODEL]
    assert 1 <= len(page.example_trace_ids) <= 3
    (rule,) = [r for r in load_rules() if r.name == page.rule]
    since, until = example_window(rule, page)
    start = spans["start_time"]
    in_window = start.ge(pd.Timestamp(since)) & start.lt(pd.Timestamp(until))
    in_scope = spans["provider"].eq(PROVIDER) & spans["model_requested"].eq(MODEL)
    failed = set(spans.loc[in_window & in_scope & spans["status"].eq("error"), "trace_id"])
    assert set(page.example_trace_ids) <= failed, "examples are failed traces of the incident's scope and window"
    decoy = spans.loc[~in_window & in_scope & spans["status"].eq("error"), "trace_id"]
    assert not set(page.example_trace_ids) & set(decoy)
    assert len(page.example_trace_ids) == min(3, len(failed))
    assert [list(ids) for ids in stored["example_trace_ids"]] == [list(page.example_trace_ids)]

    notification = Notification(page.group_key, "trigger", (page,), "https://runbooks/x", grafana_url=GRAFANA)
    worst = page.example_trace_ids[0]
    command, link = f"spanline trace {worst}", f"{GRAFANA}/d/spanline-trace/spanline-trace?var-trace_id={worst}"
    assert notification.to_dict()["example_traces"][0] == {"trace_id": worst, "command": command, "grafana": link}
    slack = str(SlackReceiver(url=SecretStr("https://hooks.example/x")).body(notification))
    assert f"`{command}` · <{link}|Grafana>" in slack
    pagerduty = PagerDutyReceiver(routing_key=SecretStr("k")).body(notification)
    assert {"href": link, "text": f"Example trace {worst}"} in pagerduty["links"]
    assert pagerduty["payload"]["custom_details"]["example_traces"][0]["command"] == command


def test_a_page_does_not_wait_for_a_clickhouse_that_is_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    with migrated_chdb(tmp_path / "chdb", DB) as client:
        service = service_for(tmp_path, DB, client)
    service.evaluator = learned(rng)
    service._ready = True

    async def hanging(*_: object) -> None:
        await asyncio.sleep(3600)  # a storage call that keeps retrying a ClickHouse that is down

    service._storage = hanging
    monkeypatch.setattr("spanline.alerts.worker.EXAMPLES_TIMEOUT_S", 0.2)

    async def evaluate() -> list[AlertEvent]:
        firing = []
        for minute in minutes(rng, START + timedelta(minutes=40), 10) + minutes(
            rng, START + timedelta(minutes=50), 10, OUTAGE
        ):
            firing += [e for e in service.evaluator.evaluate(minute) if e.state == "firing"]
        return await service._with_examples(firing)

    events = asyncio.run(evaluate())
    assert events and all(e.example_trace_ids == () for e in events)
