"""The alerts history table (0005) and the baseline bootstrap from the rollups, on chDB."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from clickhouse_connect.driver.client import Client

from spanline.alerts.bootstrap import bootstrap
from spanline.alerts.conditions import family_of
from spanline.alerts.evaluator import Evaluator
from spanline.alerts.events import AlertEvent, dedup_key
from spanline.alerts.history import AlertHistory
from spanline.alerts.rules import Baseline, load_rules
from spanline.contracts import load_contracts
from tests.support.alert_frames import Knobs, hour_frame, minute_frame
from tests.support.chdb import migrated_chdb
from tests.test_alert_evaluator import Minute

DB = "alerting"
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with migrated_chdb(tmp_path_factory.mktemp("alerting") / "chdb", DB) as chdb:
        yield chdb


def alert(state: str, at: datetime, tenant: str = "acme") -> AlertEvent:
    scope = {"tenant_id": tenant, "feature": "support-chat"}
    return AlertEvent(
        rule="cost_spike_hourly",
        severity="high",
        state=state,
        at=at,
        started_at=NOW,
        dedup_key=dedup_key("cost_spike_hourly", scope),
        scope=scope,
        group={"tenant_id": tenant},
        value=42.5,
        threshold=12.0,
        summary="spend spike",
        description="d",
        runbook="cost-spike",
        runbook_branch="output_length",
        diagnosis={"branch": "output_length", "spend_change_share": {"output_length": 0.93}},
    )


def test_every_state_change_is_stored_once_and_open_incidents_are_readable(client: Client) -> None:
    history = AlertHistory(client, DB)
    fired, resolved = alert("firing", NOW), alert("resolved", NOW + timedelta(minutes=20))
    other = replace(alert("firing", NOW + timedelta(minutes=3), tenant="globex"), example_trace_ids=("t9", "t4"))
    history.write([fired, other])
    history.write([fired, resolved])  # a retry / re-evaluation writes the firing row again
    rows = client.query(
        f"SELECT state, tenant_id, scope['tenant_id'], runbook_branch, "
        f"JSONExtractFloat(diagnosis, 'spend_change_share', 'output_length') FROM {DB}.alerts ORDER BY at"
    ).result_rows
    assert rows == [
        ("firing", "acme", "acme", "output_length", 0.93),
        ("firing", "globex", "globex", "output_length", 0.93),
        ("resolved", "acme", "acme", "output_length", 0.93),
    ]
    incidents = history.open_incidents()
    assert [(r["dedup_key"], r["rule"], r["state"]) for r in incidents] == [
        ("cost_spike_hourly/feature=support-chat/tenant_id=globex", "cost_spike_hourly", "firing")
    ]

    # A worker without a state file adopts the open incident and resolves it when it clears.
    evaluator = Evaluator(load_rules(), load_contracts())
    adopted = evaluator.adopt(incidents)
    assert [(e.dedup_key, e.runbook_branch, e.diagnosis["branch"], e.example_trace_ids) for e in adopted] == [
        ("cost_spike_hourly/feature=support-chat/tenant_id=globex", "output_length", "output_length", ("t9", "t4"))
    ]
    assert evaluator.firing() == adopted
    rng = np.random.default_rng(9)
    quiet = [NOW + timedelta(minutes=n) for n in range(20)]
    events = [e for m in quiet for e in evaluator.evaluate(Minute(m, minute_frame(m, rng)))]
    assert [(e.dedup_key, e.state) for e in events] == [
        ("cost_spike_hourly/feature=support-chat/tenant_id=globex", "resolved")
    ]


def _insert_rollup(client: Client, table: str, bucket: str, frame: pd.DataFrame) -> None:
    columns = {
        name
        for (name,) in client.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {table:String} "
            "AND NOT startsWith(type, 'AggregateFunction')",
            parameters={"db": DB, "table": table},
        ).result_rows
    }
    chosen = frame[[c for c in frame.columns if c in columns]].copy()
    chosen[bucket] = chosen[bucket].dt.tz_convert("UTC").dt.tz_localize(None)
    rows = [
        [value.item() if hasattr(value, "item") else value for value in row]
        for row in chosen.itertuples(index=False, name=None)
    ]
    client.insert(f"{DB}.{table}", rows, column_names=list(chosen.columns))


def _insert_hours(client: Client, frame: pd.DataFrame) -> None:
    _insert_rollup(client, "spans_hour", "hour", frame)


def test_bootstrap_rebuilds_baselines_from_the_rollups(client: Client) -> None:
    rng = np.random.default_rng(4)
    hours = pd.concat([hour_frame(NOW - timedelta(hours=n), rng) for n in range(6, 1, -1)], ignore_index=True)
    _insert_hours(client, hours)
    # the last hour as the worker writes it, in minutes (the view rolls them into spans_hour): the
    # bootstrap also keeps them for diagnoses and spend noise
    minutes = pd.concat([minute_frame(NOW - timedelta(minutes=n), rng) for n in range(60, 0, -1)], ignore_index=True)
    _insert_rollup(client, "spans_minute", "minute", minutes)
    client.command(  # one hour of TTFTs 1..1000 ms for acme/support-chat, as the MV would store them (µs)
        f"INSERT INTO {DB}.spans_hour (tenant_id, service, feature, provider, model_requested, route, kind, hour, "
        "spans, ttft_us_sketch) SELECT 'acme', 'chat', 'support-chat', 'openai', 'gpt-4o-mini', 'r', 'llm', "
        "toDateTime('2026-11-20 08:00:00', 'UTC'), 0, quantilesDDState(0.01, 0.5, 0.95, 0.99)(toFloat64(number) * 1000) "
        "FROM numbers(1, 1000)"
    )
    evaluator = Evaluator(load_rules(), load_contracts())
    assert bootstrap(evaluator, client, DB, NOW) > 0

    cost_rule = next(r for r in evaluator.rules if r.name == "cost_spike_day_over_day")
    family = family_of(cost_rule, ("tenant_id",))
    trailing = Baseline(kind="trailing", over=timedelta(hours=24), min_hours=3)
    learned = evaluator.store.baseline(family, trailing, NOW)
    expected = pd.concat([hours, minutes]).groupby("tenant_id")["cost_usd"].sum()
    assert learned["num"].to_dict() == pytest.approx(expected.to_dict(), rel=1e-9)
    assert set(learned["hours"]) == {6}

    latency = next(r for r in evaluator.rules if r.name == "latency_spike")
    ttft = evaluator.store.baseline(
        family_of(latency, ("tenant_id", "feature")),
        latency.condition.baseline.fallback.model_copy(update={"min_hours": 1}),
        NOW,
    )
    assert ttft.loc[("acme", "support-chat"), "value"] == pytest.approx(950, rel=0.02)

    # Bootstrapped baselines judge the very first live minutes: a 15x output spike pages within
    # 10 (5 before the spend rule asked the rise to lift most of the window's minutes, ranked
    # among the reference's: ~6 of its 10, then the rule's `for: 3m`)
    live = [NOW + timedelta(minutes=n) for n in range(12)]
    incident = replace(Knobs(), output_tokens=4500.0)
    events = [
        e
        for m in live
        for e in evaluator.evaluate(Minute(m, minute_frame(m, rng, where={"tenant_id": "acme"}, incident=incident)))
    ]
    spikes = [e for e in events if e.rule == "cost_spike_hourly"]
    assert {e.group_key for e in spikes} == {"cost_spike_hourly/tenant_id=acme"}
    assert spikes[0].at - NOW <= timedelta(minutes=10)


def test_bootstrap_evaluates_the_minutes_of_the_current_hour_without_their_sketches(client: Client) -> None:
    """A worker starting at 10:07 evaluates 10:00-10:06 from spans_minute, whose frames carry no
    sketches: percentile families skip those minutes (they learn from live ones), the rest count."""
    client.command(
        f"INSERT INTO {DB}.spans_minute (tenant_id, service, feature, provider, model_requested, route, kind, "
        "minute, spans, requests, llm_calls, cost_usd, ttft_us_sketch) SELECT 'acme', 'chat', 'support-chat', "
        "'openai', 'gpt-4o-mini', 'r', 'llm', toDateTime('2026-11-20 10:00:00', 'UTC') + 60 * (number % 7), 1, 1, "
        "1, 0.01, quantilesDDState(0.01, 0.5, 0.95, 0.99)(toFloat64(number) * 1000) FROM numbers(70) "
        "GROUP BY number"
    )
    evaluator = Evaluator(load_rules(), load_contracts())
    bootstrap(evaluator, client, DB, NOW + timedelta(minutes=7))
    assert evaluator.last_minute == NOW + timedelta(minutes=6)
