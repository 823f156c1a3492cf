"""Alerting inside the stream worker: ``metrics`` records → MinuteMerger → evaluator → pages.

Per merged minute: evaluate every rule (span figures from the minute, pipeline figures from
the worker's PipelineStats), then for each state change hand it to the dispatcher, publish the
event on the ``alerts`` topic and write the ``alerts`` history row (deduplicated; until it is
written the event is kept with the saved state, so a stop between a page and its row does not
lose the row).
Baselines and alert states are saved on every state change (and every 10 minutes), so a
restarted worker neither forgets an incident nor pages it twice (a replayed minute is ignored);
on a first start (or with a state file that cannot be used) the baselines are bootstrapped from
the ClickHouse rollups and the incidents still open in the ``alerts`` table are adopted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import faust
import orjson
import pandas as pd
from clickhouse_connect.driver.client import Client

from spanline.alerts.bootstrap import DIAGNOSIS_HISTORY, bootstrap, remember_minutes
from spanline.alerts.dispatch import Dispatcher, GroupPolicy, ReceiverPolicy
from spanline.alerts.evaluator import Evaluator
from spanline.alerts.events import AlertEvent
from spanline.alerts.examples import example_trace_ids
from spanline.alerts.history import AlertHistory
from spanline.alerts.notifiers import LogReceiver, PagerDutyReceiver, Receiver, SlackReceiver, WebhookReceiver
from spanline.alerts.rules import load_rules
from spanline.contracts import load_contracts
from spanline.metrics import (
    ALERT_EVALUATION_FAILURES,
    ALERT_EVALUATOR_HEALTHY,
    ALERT_EVENTS,
    ALERT_LAST_MINUTE,
    ALERT_MINUTES_EVALUATED,
)
from spanline.settings import Settings
from spanline.windows.merger import MinuteFigures, MinuteMerger

log = logging.getLogger(__name__)
Storage = Callable[..., Awaitable[Any]]
#: Minutes between state saves when nothing changed (a state change is saved at once): a restart
#: loses at most this much baseline history, never an alert state.
SAVE_EVERY_MINUTES = 10
Publish = Callable[[bytes, bytes], Awaitable[None]]
#: Longest a page waits for its example traces (one ranking query per firing alert), and how many
#: alerts of one minute get them (most severe first): the queries share the sink's thread with ingest.
EXAMPLES_TIMEOUT_S = 5.0
EXAMPLES_PER_MINUTE = 5
T = TypeVar("T")


class PipelineCounts(Protocol):
    """What alerting reads of the ingest pipeline's stats (running totals since start)."""

    @property
    def spans_in(self) -> int: ...

    @property
    def dead_letters(self) -> int: ...


def receivers_from(settings: Settings) -> list[Receiver]:
    """stdout/log always; PagerDuty, Slack and the generic webhook when configured."""
    receivers: list[Receiver] = [LogReceiver()]
    if settings.alert_pagerduty_routing_key is not None:
        receivers.append(PagerDutyReceiver(settings.alert_pagerduty_routing_key, url=settings.alert_pagerduty_url))
    if settings.alert_slack_webhook_url is not None:
        receivers.append(SlackReceiver(settings.alert_slack_webhook_url))
    if settings.alert_webhook_url is not None:
        receivers.append(WebhookReceiver(settings.alert_webhook_url))
    return receivers


@dataclass
class _Counters:
    spans_in: int = 0
    dead_letters: int = 0


class AlertingService:
    """One per worker; fed the ``metrics`` topic (one partition, so one worker evaluates)."""

    def __init__(
        self, settings: Settings, storage: Storage, publish: Publish, pipeline_stats: Callable[[], PipelineCounts]
    ) -> None:
        self._settings = settings
        self._storage = storage
        self._publish = publish
        self._pipeline_stats = pipeline_stats
        self._previous = _Counters()
        self._lags: deque[float] = deque(maxlen=60)
        self.evaluator = Evaluator(load_rules(settings.alert_rules_file), load_contracts(settings.alert_contracts_file))
        self.merger = MinuteMerger(settings.topic_partitions)
        self.dispatcher = Dispatcher(
            receivers_from(settings),
            GroupPolicy(group_wait_s=settings.alert_group_wait_s, repeat_interval_s=settings.alert_repeat_interval_s),
            ReceiverPolicy(rate_per_minute=settings.alert_rate_per_minute),
            runbook_base_url=settings.resolved_runbook_base_url,
            grafana_url=settings.grafana_url,
        )
        self.state_path = settings.home / "alerts" / f"{settings.consumer_group}.state"
        self._ready = False
        self._minutes_unsaved = 0

    async def start(self) -> None:
        await self.dispatcher.start()

    async def stop(self) -> None:
        if self._ready:
            self.save()
        await self.dispatcher.drain(5)
        await self.dispatcher.stop()

    async def _prepare(self, first_minute: datetime) -> None:
        """Restore the saved state, or bootstrap baselines from ClickHouse before the first minute.

        Always ends ready: ``storage`` retries transient ClickHouse errors itself, so a failure
        that reaches here would fail again on every minute; it is logged and alerting goes on
        with what it has (an unusable state file is set aside by the restore).
        """
        database = self._settings.clickhouse_database
        if self.evaluator.restore(self.state_path):
            log.info("alert state restored from %s (last minute %s)", self.state_path, self.evaluator.last_minute)
            # Announced before the restart (the dispatcher drains on shutdown): tracked for
            # repeats and resolves, not paged again.
            self.dispatcher.adopt(self.evaluator.firing())
            if self.evaluator.unrecorded:
                try:
                    await self._record_history()
                except Exception:
                    log.exception(
                        "writing the %d alert history row(s) paged before the restart failed; they are "
                        "written with the next state change",
                        len(self.evaluator.unrecorded),
                    )
            await self._attempt(
                "reading the diagnosis minutes",
                "diagnoses compare with the minutes seen from now on",
                lambda client: remember_minutes(
                    self.evaluator, client, database, first_minute - DIAGNOSIS_HISTORY, first_minute
                ),
            )
        else:
            bootstrapped = await self._attempt(
                "bootstrapping the alert baselines from ClickHouse",
                "alerting starts from empty baselines and learns them from live minutes",
                lambda client: bootstrap(self.evaluator, client, database, first_minute),
            )
            if bootstrapped is None:  # it may have stopped half way: start from a known state
                self.evaluator = Evaluator(self.evaluator.rules, self.evaluator.contracts)
            incidents = await self._attempt(
                "reading the open incidents",
                "incidents left firing by a previous worker are not resolved by this one",
                lambda client: AlertHistory(client, database).open_incidents(),
            )
            adopted = self.evaluator.adopt(incidents or [])
            if adopted:
                log.info("adopted %d open incident(s) from the alerts table", len(adopted))
                self.dispatcher.adopt(adopted)
        self._ready = True

    async def _attempt(self, step: str, consequence: str, function: Callable[[Client], T]) -> T | None:
        """``function(client)`` through storage; None (and one error log) when it fails."""
        try:
            result: T = await self._storage(function)
            return result
        except Exception:
            log.exception("%s failed; %s", step, consequence)
            return None

    async def handle(self, value: bytes) -> list[AlertEvent]:
        """One ``metrics`` record; returns the state changes of the minutes it completed.

        A failure is counted and marks the evaluator unhealthy until a record succeeds again."""
        changes: list[AlertEvent] = []
        try:
            for figures in self.merger.add(value):
                if not self._ready:
                    await self._prepare(figures.minute)
                changes.extend(await self._evaluate(figures))
        except Exception:
            ALERT_EVALUATION_FAILURES.inc()
            ALERT_EVALUATOR_HEALTHY.set(0)
            raise
        ALERT_EVALUATOR_HEALTHY.set(1)
        return changes

    async def _evaluate(self, figures: MinuteFigures) -> list[AlertEvent]:
        events = self.evaluator.evaluate(figures, self._pipeline_figures(figures.minute))
        if events:
            events = await self._with_examples(events)
        ALERT_MINUTES_EVALUATED.inc()
        ALERT_LAST_MINUTE.set(figures.minute.timestamp())
        for event in events:
            ALERT_EVENTS.labels(event.rule, event.state).inc()
        if events:  # pages first: they must not wait for Kafka or a ClickHouse that is down
            self.evaluator.unrecorded.extend(events)  # saved from here on: a stop cannot lose their rows
            self.dispatcher.submit(events)
            for event in events:
                await self._publish(event.dedup_key.encode(), orjson.dumps(event.to_dict()))
            await self._record_history()
        self._minutes_unsaved += 1
        if events or self._minutes_unsaved >= SAVE_EVERY_MINUTES:
            self.save()
        return events

    async def _record_history(self) -> None:
        """Write the state changes not yet in the ``alerts`` table, then forget them. Rows carry a
        deduplication token, so a row written before a stop is not doubled by writing it again."""
        unrecorded = list(self.evaluator.unrecorded)
        database = self._settings.clickhouse_database
        await self._storage(lambda client: AlertHistory(client, database).write(unrecorded))
        del self.evaluator.unrecorded[: len(unrecorded)]

    async def _with_examples(self, events: list[AlertEvent]) -> list[AlertEvent]:
        """Firing events with their example traces (alerts/examples.py), found within
        EXAMPLES_TIMEOUT_S: a ClickHouse that is slow or down delays a page by that much at most,
        and the page then goes without examples."""
        rules = {rule.name: rule for rule in self.evaluator.rules}
        order = {"critical": 0, "high": 1, "medium": 2, "low": 3}
        firing = [e for e in events if e.state == "firing" and e.rule in rules]
        firing = sorted(firing, key=lambda e: order.get(e.severity, 9))[:EXAMPLES_PER_MINUTE]
        if not firing:
            return events
        database = self._settings.clickhouse_database

        def find(client: Client) -> dict[str, tuple[str, ...]]:
            return {e.dedup_key: tuple(example_trace_ids(client, database, rules[e.rule], e)) for e in firing}

        try:
            found: dict[str, tuple[str, ...]] = await asyncio.wait_for(self._storage(find), EXAMPLES_TIMEOUT_S)
        except Exception:  # TimeoutError included: the page matters more than its examples
            log.warning("example traces for %d alert(s) not found in time; paging without them", len(firing))
            return events
        return [replace(e, example_trace_ids=found.get(e.dedup_key, ())) if e in firing else e for e in events]

    def save(self) -> None:
        """Persist baselines and alert states (every state change, else every few minutes); a
        failure is logged, not raised: evaluating the next minutes matters more than the file."""
        try:
            self.evaluator.save(self.state_path)
        except Exception:
            log.exception(
                "alert state not saved to %s (retried next minute); a restart now would resume from "
                "the previous save, if any",
                self.state_path,
            )
            return
        self._minutes_unsaved = 0

    def _pipeline_figures(self, minute: datetime) -> pd.DataFrame:
        """This worker's ingest since the previous minute, how far behind traffic it runs, and how
        many partitions' windows stopped arriving (their spans are missing from the figures).

        Lag = wall clock − end of the minute, minus the smallest lag of the last hour: a worker
        that falls behind grows it, while traffic replayed with a constant offset from the wall
        clock (a backfill, an accelerated simulation) does not page.
        """
        stats = self._pipeline_stats()
        now = _Counters(stats.spans_in, stats.dead_letters)
        lag = (datetime.now(UTC) - (minute + timedelta(minutes=1))).total_seconds()
        self._lags.append(lag)
        figures = pd.DataFrame(
            [
                {
                    "spans_in": max(now.spans_in - self._previous.spans_in, 0),
                    "dead_letters": max(now.dead_letters - self._previous.dead_letters, 0),
                    "lag_s": max(lag - min(self._lags), 0.0),
                    "silent_partitions": len(self.merger.silent_reporters()),
                    "windows": 1,
                }
            ]
        )
        self._previous = now
        return figures


def install_alerting(
    app: faust.App, settings: Settings, storage: Storage, pipeline_stats: Callable[[], PipelineCounts]
) -> AlertingService:
    """Add the alerting agent (on ``metrics``) and the dispatcher task to a worker's Faust app."""
    metrics_topic = app.topic(settings.topic_metrics, value_serializer="raw", key_serializer="raw", internal=False)
    alerts_topic = app.topic(settings.topic_alerts, value_serializer="raw", key_serializer="raw", internal=False)

    async def publish(key: bytes, value: bytes) -> None:
        # force=True: sent now, not attached to the `metrics` event being processed (Faust would
        # hold it until that event is acked, which happens after this coroutine returns).
        await (await alerts_topic.send(key=key, value=value, force=True))

    service = AlertingService(settings, storage, publish, pipeline_stats)

    @app.task  # type: ignore[untyped-decorator]  # faust types App.task as a Union over bare Awaitable
    async def run_dispatcher() -> None:
        """Runs until the worker stops, then delivers what is queued (bounded) before exiting."""
        await service.start()
        try:
            await asyncio.Event().wait()
        finally:
            await service.stop()

    @app.agent(metrics_topic, concurrency=1)
    async def evaluate_alerts(stream: Any) -> None:
        async for value in stream:
            try:
                await service.handle(value)
            except Exception:  # alerting must never stop ingestion; the next minute is evaluated
                log.exception("alert evaluation failed")

    return service
