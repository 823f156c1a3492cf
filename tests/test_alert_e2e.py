"""Alerting through the real pipeline: receiver → Kafka → worker (windows → metrics → merger →
evaluator) → a loopback webhook, the ``alerts`` topic and the ClickHouse ``alerts`` table."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from tests.support.loopback import LoopbackServer
from tests.support.stack import TENANT_KEYS, Stack, read_topic

pytestmark = pytest.mark.e2e

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
MINUTES = 26  # the mismatch at minute 3, then enough event time for keep_firing_for (15 min) + lateness
MISMATCH_MINUTE = 3
SPANS_PER_MINUTE = 24


@pytest.fixture(scope="module")
def webhook() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    yield server
    server.close()


def worker_env(webhook: LoopbackServer) -> dict[str, str]:
    return {
        "SPANLINE_ALERT_WEBHOOK_URL": webhook.url,
        "SPANLINE_ALERT_GROUP_WAIT_S": "0",
        "SPANLINE_WINDOW_IDLE_S": "3",
    }


@pytest.fixture(scope="module")
def stack(tansu_kafka: Any, webhook: LoopbackServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tansu_kafka.bootstrap_servers, tmp_path_factory.mktemp("alert-stack"))
    stack.start_worker(worker_env(webhook))
    stack.start_receiver()
    yield stack
    stack.close()


def retrieval(minute: int, index: int, mismatch: bool, feature: str = "support-chat") -> dict[str, Any]:
    start = START + timedelta(minutes=minute, seconds=index * 60 / SPANS_PER_MINUTE)
    return {
        "span_id": f"r-{feature}-{minute}-{index}",
        "trace_id": f"t-{minute}-{index}",
        "service": "chat",
        "feature": feature,
        "kind": "retrieval",
        "name": "retrieve",
        "start_time": start.isoformat(),
        "duration_ms": 40.0,
        "index_name": "docs",
        "top_k": 5,
        "embedding_model": "text-embedding-3-large" if mismatch else "text-embedding-3-small",
        "index_embedding_model": "text-embedding-3-small",
    }


def test_an_embedding_mismatch_pages_once_with_its_diagnosis_and_resolves(
    stack: Stack, webhook: LoopbackServer
) -> None:
    spans = [
        retrieval(m, i, mismatch=(m == MISMATCH_MINUTE and i < 4))
        for m in range(MINUTES)
        for i in range(SPANS_PER_MINUTE)
    ]
    status, _ = stack.post("/v1/spans", orjson.dumps(spans), TENANT_KEYS["acme"])
    assert status == 200
    stack.wait_until(lambda: any(n["action"] == "resolve" for n in webhook.received), 120, "the resolve notification")

    actions = [(n["action"], n["group_key"]) for n in webhook.received]
    key = "embedding_mismatch/feature=support-chat/tenant_id=acme"
    assert actions == [("trigger", key), ("resolve", key)]
    page = webhook.received[0]
    assert page["runbook"] == "index-corruption" and page["runbook_branch"] == "embedding_mismatch"
    # the page's link opens: the receiver's own /runbooks (the default), at the branch's anchor
    assert page["runbook_url"] == f"{stack.collector_url}/runbooks/index-corruption#embedding_mismatch"
    with urllib.request.urlopen(page["runbook_url"], timeout=10) as response:
        assert response.status == 200 and 'id="embedding_mismatch"' in response.read().decode()
    alert = page["alerts"][0]
    assert alert["value"] == 4 and alert["diagnosis"]["embedding_mismatches_per_min"]["now"] > 0
    fired_at = datetime.fromisoformat(alert["at"])
    assert fired_at - (START + timedelta(minutes=MISMATCH_MINUTE)) <= timedelta(seconds=60)
    # example traces of the incident's scope and window: requests on-call can open
    examples = [e["trace_id"] for e in page["example_traces"]]
    assert 1 <= len(examples) <= 3 and all(e.startswith("t-") for e in examples)
    assert page["example_traces"][0]["command"] == f"spanline trace {examples[0]}"
    stored = stack.query("SELECT example_trace_ids FROM {db}.alerts WHERE state = 'firing'").rows
    assert [list(row[0]) for row in stored] == [examples]

    rows = stack.query("SELECT state, rule, runbook_branch, toString(at) FROM {db}.alerts ORDER BY at, state").rows
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("firing", "embedding_mismatch", "embedding_mismatch"),
        ("resolved", "embedding_mismatch", "embedding_mismatch"),
    ]
    events = read_topic(stack.bootstrap_servers, stack.settings.topic_alerts)
    assert [(e["rule"], e["state"]) for e in events] == [
        ("embedding_mismatch", "firing"),
        ("embedding_mismatch", "resolved"),
    ]


def test_a_worker_restart_during_an_incident_neither_repeats_nor_loses_its_page(
    stack: Stack, webhook: LoopbackServer
) -> None:
    key = "embedding_mismatch/feature=doc-search/tenant_id=acme"
    incident = [
        retrieval(m, i, mismatch=(m == 30 and i < 2), feature="doc-search")
        for m in range(MINUTES, 36)
        for i in range(SPANS_PER_MINUTE)
    ]

    def history() -> list[tuple[object, ...]]:
        query = "SELECT state, count() FROM {db}.alerts WHERE dedup_key = {key:String} GROUP BY state ORDER BY state"
        return [tuple(r) for r in stack.query(query, key=key).rows]

    assert stack.post("/v1/spans", orjson.dumps(incident), TENANT_KEYS["acme"])[0] == 200
    stack.wait_until(lambda: any(n["group_key"] == key for n in webhook.received), 120, "the doc-search page")
    # the page goes out before its history row is written (a ClickHouse that is down must not
    # hold a page): the restart comes once both are done
    stack.wait_until(lambda: history() == [("firing", 1)], 60, "the firing row of the doc-search page")

    stack.stop_worker()  # SIGTERM mid-incident: state saved, queued notifications delivered
    stack.start_worker(worker_env(webhook))
    after = [
        retrieval(m, i, mismatch=False, feature="doc-search") for m in range(36, 60) for i in range(SPANS_PER_MINUTE)
    ]
    assert stack.post("/v1/spans", orjson.dumps(after), TENANT_KEYS["acme"])[0] == 200
    stack.wait_until(
        lambda: ("resolve", key) in {(n["action"], n["group_key"]) for n in webhook.received},
        120,
        "the doc-search resolve",
    )

    assert [n["action"] for n in webhook.received if n["group_key"] == key] == ["trigger", "resolve"]
    stack.wait_until(lambda: len(history()) == 2, 60, "the resolved row of the doc-search page")
    assert history() == [("firing", 1), ("resolved", 1)]
