"""Notifiers and the dispatcher against real aiohttp servers on loopback standing in for
PagerDuty (Events API v2) and a Slack incoming webhook: payload shapes and paths as the
services document them, grouping, rate limits, repeats, retries and the circuit breaker.

The dispatcher's timers (group waits, rate limits, back-off, an open circuit) run in virtual
time (:class:`VirtualTime`): no test waits for them in real time."""

from __future__ import annotations

import asyncio
import heapq
import io
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from aiohttp import web
from pydantic import SecretStr

from spanline.alerts.dispatch import Dispatcher, GroupPolicy, Observer, ReceiverPolicy
from spanline.alerts.events import AlertEvent, dedup_key
from spanline.alerts.notifiers import LogReceiver, PagerDutyReceiver, SlackReceiver, WebhookReceiver
from spanline.metrics import NOTIFICATIONS, NOTIFIER_CIRCUIT_OPEN, NOTIFIER_FAILURES
from tests.support.metrics import sample
from tests.support.stack import free_port

ROUTING_KEY = "R0123456789abcdef0123456789abcde"
SLACK_PATH = "/services/T000/B000/XXXXXXXX"
PAGERDUTY_SEVERITIES = {"critical", "error", "warning", "info"}
FAST = ReceiverPolicy(rate_per_minute=600, retry_initial_s=0.02, retry_max_s=0.1, failures_to_open=3, open_s=0.3)
RUNBOOKS = "https://oncall.example.com/runbooks"
GROUPS = GroupPolicy(group_wait_s=0.2, group_interval_s=0.5, repeat_interval_s=3600)


class VirtualTime:
    """A clock and a sleep for the dispatcher: a sleep ends when the clock reaches its end, and
    the clock jumps to the earliest end every real millisecond, after the loop has handled the
    ready I/O (the fake services answer on loopback)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._order), future))
        await future

    async def advance_forever(self) -> None:
        while True:
            await asyncio.sleep(0.001)
            while self._sleepers and self._sleepers[0][2].done():  # the sleeper was cancelled
                heapq.heappop(self._sleepers)
            if self._sleepers:
                end, _, future = heapq.heappop(self._sleepers)
                self.now = max(self.now, end)
                future.set_result(None)


@dataclass
class FakeServices:
    """PagerDuty and Slack endpoints that check payloads like the real services and record them."""

    port: int
    pagerduty: list[dict] = field(default_factory=list)
    slack: list[dict] = field(default_factory=list)
    webhook: list[dict] = field(default_factory=list)
    attempts: int = 0
    fail_first: int = 0
    fail_status: int = 500
    time: VirtualTime = field(default_factory=VirtualTime)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def enqueue(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.attempts <= self.fail_first:
            return web.json_response({"status": "unavailable"}, status=self.fail_status)
        body = await request.json()
        problems = pagerduty_problems(body)
        if problems:
            return web.json_response({"status": "invalid event", "errors": problems}, status=400)
        self.pagerduty.append(body)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]}, status=202
        )

    async def slack_hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body.get("text"), str) or not all(
            b.get("type") in {"header", "section", "context"} for b in body.get("blocks", [])
        ):
            return web.Response(text="invalid_blocks", status=400)
        self.slack.append(body)
        return web.Response(text="ok")

    async def generic(self, request: web.Request) -> web.Response:
        self.webhook.append(await request.json())
        return web.Response(status=204)


def pagerduty_problems(body: dict) -> list[str]:
    """What the Events API v2 would reject (field names and limits from its documentation)."""
    problems = [f"missing {k}" for k in ("routing_key", "event_action", "dedup_key") if not body.get(k)]
    if body.get("event_action") not in {"trigger", "resolve", "acknowledge"}:
        problems.append("bad event_action")
    if len(body.get("dedup_key", "")) > 255:
        problems.append("dedup_key too long")
    if body.get("event_action") == "trigger":
        payload = body.get("payload", {})
        problems += [f"missing payload.{k}" for k in ("summary", "source", "severity") if not payload.get(k)]
        if payload.get("severity") not in PAGERDUTY_SEVERITIES:
            problems.append("bad severity")
        if len(payload.get("summary", "")) > 1024:
            problems.append("summary too long")
        if not all("href" in link for link in body.get("links", [])):
            problems.append("link without href")
    return problems


@asynccontextmanager
async def serving() -> AsyncIterator[FakeServices]:
    fake = FakeServices(port=free_port())
    app = web.Application()
    app.router.add_post("/v2/enqueue", fake.enqueue)
    app.router.add_post(SLACK_PATH, fake.slack_hook)
    app.router.add_post("/hook", fake.generic)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", fake.port).start()
    advancing = asyncio.create_task(fake.time.advance_forever())
    try:
        yield fake
    finally:
        advancing.cancel()
        await runner.cleanup()


def event(
    model: str, state: str = "firing", severity: str = "critical", rule: str = "error_rate", value: float = 0.7
) -> AlertEvent:
    scope = {"provider": "anthropic", "model_requested": model}
    at = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
    return AlertEvent(
        rule=rule,
        severity=severity,
        state=state,
        at=at,
        started_at=at,
        dedup_key=dedup_key(rule, scope),
        scope=scope,
        group={"provider": "anthropic"},
        value=value,
        threshold=0.3,
        summary=f"{rule} [{model}]: {value:.0%} fail",
        description="first attempts fail",
        runbook="provider-outage",
        runbook_branch="provider_errors",
        diagnosis={"branch": "provider_errors", "top_error_type": "server_error"},
        excess=value / 0.3,
    )


def run_with_services(body: Callable[[FakeServices], Awaitable[None]]) -> None:
    async def main() -> None:
        async with serving() as services:
            await body(services)

    asyncio.run(main())


def dispatcher_for(
    services: FakeServices, targets: list, groups: GroupPolicy, policy: ReceiverPolicy, observer: Observer | None = None
) -> Dispatcher:
    """A dispatcher on the services' virtual time."""
    return Dispatcher(
        targets,
        groups,
        policy,
        runbook_base_url=RUNBOOKS,
        clock=services.time.clock,
        sleep=services.time.sleep,
        observer=observer,
    )


def receivers(fake: FakeServices) -> list:
    return [
        PagerDutyReceiver(SecretStr(ROUTING_KEY), url=f"{fake.base}/v2/enqueue"),
        SlackReceiver(SecretStr(fake.base + SLACK_PATH)),
        WebhookReceiver(SecretStr(f"{fake.base}/hook")),
    ]


def test_an_outage_on_fifty_models_is_one_page_then_one_resolve() -> None:
    run_with_services(_an_outage_on_fifty_models_is_one_page_then_one_resolve)


async def _an_outage_on_fifty_models_is_one_page_then_one_resolve(services: FakeServices) -> None:
    dispatcher = dispatcher_for(services, receivers(services), GROUPS, FAST)
    await dispatcher.start()
    try:
        dispatcher.submit([event(f"model-{n}") for n in range(50)])
        assert await dispatcher.drain(10)
        dispatcher.submit([event(f"model-{n}", "resolved") for n in range(50)])
        assert await dispatcher.drain(10)
    finally:
        await dispatcher.stop()
    trigger, resolve = services.pagerduty
    assert [trigger["event_action"], resolve["event_action"]] == ["trigger", "resolve"]
    assert trigger["dedup_key"] == resolve["dedup_key"] == "error_rate/provider=anthropic"
    assert trigger["routing_key"] == ROUTING_KEY and resolve == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": trigger["dedup_key"],
    }
    payload = trigger["payload"]
    assert payload["severity"] == "critical" and payload["class"] == "provider_errors"
    assert "(+49 more: [critical] provider=anthropic, model_requested=model-" in payload["summary"]
    assert len(payload["custom_details"]["alerts_in_group"]) == 50
    assert payload["custom_details"]["diagnosis"]["top_error_type"] == "server_error"
    assert trigger["links"][0]["href"] == f"{RUNBOOKS}/provider-outage#provider_errors"
    assert len(services.slack) == 2 and services.slack[0]["blocks"][0]["type"] == "header"
    assert services.slack[0]["text"].startswith("FIRING") and services.slack[1]["text"].startswith("RESOLVED")
    assert [n["action"] for n in services.webhook] == ["trigger", "resolve"]
    assert len(services.webhook[0]["alerts"]) == 50
    assert all(stats.delivered == 2 and stats.failures == 0 for stats in dispatcher.stats.values())


def test_a_failing_receiver_gets_the_page_once_when_it_recovers() -> None:
    run_with_services(_a_failing_receiver_gets_the_page_once_when_it_recovers)


async def _a_failing_receiver_gets_the_page_once_when_it_recovers(services: FakeServices) -> None:
    services.fail_first = 7  # the circuit opens after 3 failures; each failed probe re-opens it
    failures_before = sample(
        NOTIFIER_FAILURES, "spanline_notifier_failures_total", receiver="pagerduty", retryable="true"
    )
    delivered_before = sample(NOTIFICATIONS, "spanline_notifications_total", receiver="pagerduty", outcome="delivered")
    pagerduty = PagerDutyReceiver(SecretStr(ROUTING_KEY), url=f"{services.base}/v2/enqueue")
    dispatcher = dispatcher_for(services, [pagerduty], GROUPS, FAST)
    await dispatcher.start()
    try:
        dispatcher.submit([event("claude-3-5-sonnet")])
        assert await dispatcher.drain(15)
    finally:
        await dispatcher.stop()
    stats = dispatcher.stats["pagerduty"]
    assert [body["event_action"] for body in services.pagerduty] == ["trigger"]
    assert services.attempts == 8 and stats.failures == 7 and stats.delivered == 1
    assert stats.circuit_opens == 5 and stats.circuit == "closed" and stats.dropped == 0
    failures = sample(NOTIFIER_FAILURES, "spanline_notifier_failures_total", receiver="pagerduty", retryable="true")
    delivered = sample(NOTIFICATIONS, "spanline_notifications_total", receiver="pagerduty", outcome="delivered")
    assert (failures - failures_before, delivered - delivered_before) == (7, 1)
    assert sample(NOTIFIER_CIRCUIT_OPEN, "spanline_notifier_circuit_open", receiver="pagerduty") == 0


def test_refusals_and_dead_endpoints_are_counted_never_raised() -> None:
    run_with_services(_refusals_and_dead_endpoints_are_counted_never_raised)


async def _refusals_and_dead_endpoints_are_counted_never_raised(services: FakeServices) -> None:
    services.fail_first, services.fail_status = 1, 400
    refused_before = sample(
        NOTIFIER_FAILURES, "spanline_notifier_failures_total", receiver="pagerduty", retryable="false"
    )
    dropped_before = sample(NOTIFICATIONS, "spanline_notifications_total", receiver="pagerduty", outcome="dropped")
    stream = io.StringIO()
    dead = WebhookReceiver(SecretStr(f"http://127.0.0.1:{free_port()}/hook"))  # nothing listens there
    policy = ReceiverPolicy(rate_per_minute=600, retry_initial_s=0.01, retry_max_s=0.02, failures_to_open=3, open_s=30)
    dispatcher = dispatcher_for(
        services,
        [PagerDutyReceiver(SecretStr(ROUTING_KEY), url=f"{services.base}/v2/enqueue"), dead, LogReceiver(stream)],
        GROUPS,
        policy,
    )
    await dispatcher.start()
    try:
        dispatcher.submit([event("claude-3-5-sonnet")])
        deadline = services.time.now + 10
        while dispatcher.stats["webhook"].circuit != "open" and services.time.now < deadline:
            await services.time.sleep(0.05)
    finally:
        await dispatcher.stop()
    stats = dispatcher.stats
    assert stats["pagerduty"].dropped == 1 and stats["pagerduty"].attempts == 1 and services.pagerduty == []
    assert stats["webhook"].circuit == "open" and stats["webhook"].failures == 3 and stats["webhook"].queued == 1
    refused = sample(NOTIFIER_FAILURES, "spanline_notifier_failures_total", receiver="pagerduty", retryable="false")
    dropped = sample(NOTIFICATIONS, "spanline_notifications_total", receiver="pagerduty", outcome="dropped")
    assert (refused - refused_before, dropped - dropped_before) == (1, 1)
    assert sample(NOTIFIER_CIRCUIT_OPEN, "spanline_notifier_circuit_open", receiver="webhook") == 1
    line = json.loads(stream.getvalue().splitlines()[0])
    assert line["action"] == "trigger" and line["runbook_branch"] == "provider_errors"


def test_rate_limit_spaces_notifications_and_long_incidents_repeat() -> None:
    run_with_services(_rate_limit_spaces_notifications_and_long_incidents_repeat)


async def _rate_limit_spaces_notifications_and_long_incidents_repeat(services: FakeServices) -> None:
    policy = ReceiverPolicy(rate_per_minute=120, burst=1)
    groups = GroupPolicy(group_wait_s=0.0, group_interval_s=60, repeat_interval_s=3.0)
    dispatcher = dispatcher_for(services, [WebhookReceiver(SecretStr(f"{services.base}/hook"))], groups, policy)
    await dispatcher.start()
    started = services.time.now
    try:
        dispatcher.submit([replace_group(event("m"), f"p{n}") for n in range(4)])
        assert await dispatcher.drain(10)
        spent = services.time.now - started
        await services.time.sleep(3.5)
    finally:
        await dispatcher.stop()
    assert spent >= 1.4  # 4 notifications at 2/s with a burst of 1
    first = services.webhook[:4]
    assert [n["repeat"] for n in first] == [False] * 4
    assert any(n["repeat"] for n in services.webhook[4:])


def replace_group(alert: AlertEvent, provider: str) -> AlertEvent:
    scope = {**alert.scope, "provider": provider}
    return replace(alert, scope=scope, group={"provider": provider}, dedup_key=dedup_key(alert.rule, scope))


def test_one_incident_is_one_page_listing_its_scopes_worst_first() -> None:
    run_with_services(_one_incident_is_one_page_listing_its_scopes_worst_first)


async def _one_incident_is_one_page_listing_its_scopes_worst_first(services: FakeServices) -> None:
    """A provider outage pages critical; the same provider's 429 and retry pages (high, medium,
    their own groups) are held back while it fires and never sent when they clear first. The one
    page lists its models worst first: critical before high, then furthest past the threshold."""
    dispatcher = dispatcher_for(services, receivers(services), GROUPS, FAST)
    await dispatcher.start()
    try:
        dispatcher.submit(
            [
                event("haiku", severity="high", value=0.12),
                event("sonnet", value=0.5),
                event("opus", value=0.9),
                event("sonnet", severity="high", rule="rate_limiting", value=0.05),
                event("sonnet", severity="medium", rule="retry_amplification", value=2.4),
            ]
        )
        assert await dispatcher.drain(10)
        dispatcher.submit(
            [
                event("sonnet", "resolved", "high", "rate_limiting", 0.05),
                event("sonnet", "resolved", "medium", "retry_amplification", 2.4),
            ]
        )
        assert await dispatcher.drain(10)
        dispatcher.submit([event(m, "resolved") for m in ("haiku", "sonnet", "opus")])
        assert await dispatcher.drain(10)
    finally:
        await dispatcher.stop()
    assert [(b["event_action"], b["dedup_key"]) for b in services.pagerduty] == [
        ("trigger", "error_rate/provider=anthropic"),
        ("resolve", "error_rate/provider=anthropic"),
    ]
    trigger = services.webhook[0]
    assert trigger["scopes"] == [
        "[critical] provider=anthropic, model_requested=opus",
        "[critical] provider=anthropic, model_requested=sonnet",
        "[high] provider=anthropic, model_requested=haiku",
    ]
    assert trigger["severity"] == "critical" and trigger["summary"].startswith("error_rate [opus]")
    details = services.pagerduty[0]["payload"]["custom_details"]["alerts_in_group"]
    assert [a["severity"] for a in details] == ["critical", "critical", "high"]
    assert "Scopes, worst first" in json.dumps(services.slack[0]["blocks"])
    assert dispatcher.inhibited == 2


def test_a_held_back_page_is_sent_when_the_critical_one_resolves_first() -> None:
    run_with_services(_a_held_back_page_is_sent_when_the_critical_one_resolves_first)


async def _a_held_back_page_is_sent_when_the_critical_one_resolves_first(services: FakeServices) -> None:
    observed: list[tuple[str, str]] = []
    dispatcher = dispatcher_for(
        services,
        [WebhookReceiver(SecretStr(f"{services.base}/hook"))],
        GROUPS,
        FAST,
        observer=lambda notification, now: observed.append((notification.action, notification.group_key)),
    )
    await dispatcher.start()
    try:
        dispatcher.submit([event("sonnet"), event("sonnet", severity="high", rule="rate_limiting", value=0.05)])
        assert await dispatcher.drain(10)
        assert [n["group_key"] for n in services.webhook] == ["error_rate/provider=anthropic"]
        dispatcher.submit([event("sonnet", "resolved")])
        assert await dispatcher.drain(10)
    finally:
        await dispatcher.stop()
    assert [(n["action"], n["group_key"]) for n in services.webhook] == [
        ("trigger", "error_rate/provider=anthropic"),
        ("resolve", "error_rate/provider=anthropic"),
        ("trigger", "rate_limiting/provider=anthropic"),
    ]
    assert observed == [(n["action"], n["group_key"]) for n in services.webhook]  # every notification, in order


def test_an_escalation_to_critical_updates_the_same_incident_at_once() -> None:
    run_with_services(_an_escalation_to_critical_updates_the_same_incident_at_once)


async def _an_escalation_to_critical_updates_the_same_incident_at_once(services: FakeServices) -> None:
    slow_updates = GroupPolicy(group_wait_s=0.2, group_interval_s=600, repeat_interval_s=3600)
    dispatcher = dispatcher_for(
        services, [PagerDutyReceiver(SecretStr(ROUTING_KEY), url=f"{services.base}/v2/enqueue")], slow_updates, FAST
    )
    await dispatcher.start()
    try:
        dispatcher.submit([event("sonnet", severity="high", value=0.12)])
        assert await dispatcher.drain(10)
        escalated_at = services.time.now
        dispatcher.submit([event("sonnet", value=0.6)])  # same dedup key, a worse burn-rate tier
        assert await dispatcher.drain(10)
    finally:
        await dispatcher.stop()
    assert [(b["dedup_key"], b["payload"]["severity"]) for b in services.pagerduty] == [
        ("error_rate/provider=anthropic", "error"),
        ("error_rate/provider=anthropic", "critical"),
    ]
    assert services.time.now - escalated_at < 60  # not held for the 600 s group_interval
