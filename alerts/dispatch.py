"""From alert events to notifications: grouping, rate limits, repeats, retries, circuit breakers.

* **Grouping**: events of the same rule and ``group_by`` values form one group (an outage of
  one provider on 50 models is one group); a group is announced after ``group_wait`` (to
  collect its members), updated at most every ``group_interval`` as members join, repeated
  every ``repeat_interval`` while it fires, and resolved when its last member resolves.
* **Inhibition**: while a group with a critical member fires, a group without one whose labels
  include all of its (non-empty) labels is held back: a provider outage paged critical is not also
  paged as that provider's 429s or retries. It is announced if it still fires after the critical
  one resolves, and dropped unannounced if it clears first.
* **Escalation**: a member turning critical (a worse burn-rate tier) re-announces its group at
  once, not after ``group_interval``: same group key, so the receiver updates the one incident.
* **Per receiver**: a FIFO queue drained by one task, a token bucket (``rate_per_minute``),
  retries with jittered exponential back-off honouring Retry-After (spanline/retrying.py), and
  a circuit breaker: after ``failures_to_open`` consecutive failures the retries give up, the
  circuit opens for ``open_s``, then the queued head probes it. A retryable notification is
  never dropped: the page arrives once the receiver recovers. Permanent failures (4xx) and
  queue overflow drop the notification, counted and logged.

Nothing here raises into the caller: :meth:`Dispatcher.submit` only records events. The clock
and the sleep are parameters (real by default) so tests run the timers in virtual time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import aiohttp

from spanline.alerts.events import AlertEvent
from spanline.alerts.notifiers import DeliveryError, Notification, Receiver
from spanline.alerts.rules import SEVERITY_ORDER
from spanline.metrics import NOTIFICATIONS, NOTIFIER_CIRCUIT_OPEN, NOTIFIER_FAILURES
from spanline.retrying import DEFAULT_INITIAL_S, DEFAULT_MAX_S, Retry
from spanline.runbooks import runbook_link

log = logging.getLogger(__name__)
#: Monotonic seconds, and a pause of some seconds: real by default, virtual in tests.
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
#: Sees every notification as it leaves the dispatcher, with the clock's time (e.g. a page log).
Observer = Callable[[Notification, float], None]


@dataclass(frozen=True)
class GroupPolicy:
    group_wait_s: float = 5.0
    group_interval_s: float = 60.0
    repeat_interval_s: float = 4 * 3600.0


@dataclass(frozen=True)
class ReceiverPolicy:
    rate_per_minute: float = 20.0
    burst: float | None = None  # token bucket size; None = rate_per_minute
    retry_initial_s: float = DEFAULT_INITIAL_S
    retry_max_s: float = DEFAULT_MAX_S
    failures_to_open: int = 5
    open_s: float = 30.0
    queue_limit: int = 1000


@dataclass
class ReceiverStats:
    """What operators watch per receiver (also logged)."""

    delivered: int = 0
    attempts: int = 0
    failures: int = 0
    dropped: int = 0
    circuit_opens: int = 0
    circuit: str = "closed"
    queued: int = 0


@dataclass
class _Group:
    members: dict[str, AlertEvent]
    created: float
    labels: dict[str, str] = field(default_factory=dict)
    notified: bool = False
    last_sent: float = 0.0
    changed: bool = False
    escalated: bool = False
    resolved: list[AlertEvent] = field(default_factory=list)

    @property
    def critical(self) -> bool:
        return any(event.severity == "critical" for event in self.members.values())

    def worst(self) -> int:
        return min((SEVERITY_ORDER.get(e.severity, 9) for e in self.members.values()), default=9)


class _Channel:
    """One receiver: queue, token bucket, retries, circuit breaker."""

    def __init__(
        self, receiver: Receiver, policy: ReceiverPolicy, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        self.receiver = receiver
        self.policy = policy
        self.stats = ReceiverStats()
        self.queue: deque[Notification] = deque()
        self.wakeup = asyncio.Event()
        self._clock = clock
        self._sleep = sleep
        self._capacity = policy.burst if policy.burst is not None else policy.rate_per_minute
        self._tokens = self._capacity
        self._refilled = clock()
        self._consecutive_failures = 0
        self._circuit("closed")  # every receiver's series exists from the start
        for outcome in ("delivered", "dropped"):
            NOTIFICATIONS.labels(receiver.name, outcome)
        self._retry = Retry(
            _retryable,
            policy.retry_initial_s,
            policy.retry_max_s,
            retry_after=_retry_after,
            give_up=self._circuit_must_open,
            sleep=sleep,
            logger=log,
        )

    def put(self, notification: Notification) -> None:
        if len(self.queue) >= self.policy.queue_limit:
            dropped = self.queue.popleft()
            self._dropped()
            log.error(
                "receiver %s queue full (%d); dropped %s of %s",
                self.receiver.name,
                self.policy.queue_limit,
                dropped.action,
                dropped.group_key,
            )
        self.queue.append(notification)
        self.stats.queued = len(self.queue)
        self.wakeup.set()

    async def run(self, session: aiohttp.ClientSession) -> None:
        while True:
            if not self.queue:
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            await self._take_token()
            await self._deliver(session, self.queue[0])
            self.queue.popleft()
            self.stats.queued = len(self.queue)

    async def _take_token(self) -> None:
        rate = self.policy.rate_per_minute / 60.0
        while True:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._refilled) * rate)
            self._refilled = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await self._sleep((1 - self._tokens) / rate)

    async def _deliver(self, session: aiohttp.ClientSession, notification: Notification) -> None:
        """Until delivered or permanently refused: retried with back-off until the circuit must
        open, then again after each ``open_s`` (the breaker)."""
        what = f"receiver {self.receiver.name}: {notification.action} of {notification.group_key}"
        while True:
            try:
                await self._retry.run(lambda: self._attempt(session, notification), what)
            except DeliveryError as exc:
                if exc.retryable:  # the retries gave up: the circuit opens
                    await self._open_circuit(exc)
                    continue
                self._dropped()
                log.error(
                    "receiver %s refused %s of %s for good: %s",
                    self.receiver.name,
                    notification.action,
                    notification.group_key,
                    exc,
                )
                return
            except Exception:  # a receiver bug must not kill the channel
                self._dropped()
                log.exception("receiver %s crashed on %s; dropped", self.receiver.name, notification.group_key)
                return
            if self.stats.circuit != "closed":
                log.warning("receiver %s recovered; circuit closed", self.receiver.name)
            self._circuit("closed")
            self.stats.delivered += 1
            NOTIFICATIONS.labels(self.receiver.name, "delivered").inc()
            return

    def _dropped(self) -> None:
        self.stats.dropped += 1
        NOTIFICATIONS.labels(self.receiver.name, "dropped").inc()

    def _circuit(self, state: str) -> None:
        self.stats.circuit = state
        NOTIFIER_CIRCUIT_OPEN.labels(self.receiver.name).set(state != "closed")

    async def _attempt(self, session: aiohttp.ClientSession, notification: Notification) -> None:
        """One try, counted; consecutive retryable failures feed the breaker."""
        self.stats.attempts += 1
        try:
            await self.receiver.send(session, notification)
        except Exception as exc:
            self.stats.failures += 1
            retryable = _retryable(exc)
            NOTIFIER_FAILURES.labels(self.receiver.name, "true" if retryable else "false").inc()
            if retryable:
                self._consecutive_failures += 1
            raise
        self._consecutive_failures = 0

    def _circuit_must_open(self) -> bool:
        return self._consecutive_failures >= self.policy.failures_to_open

    async def _open_circuit(self, exc: DeliveryError) -> None:
        """Stop trying for ``open_s``; the next try is the half-open probe."""
        if self.stats.circuit != "open":
            self.stats.circuit_opens += 1
        self._circuit("open")
        log.error(
            "receiver %s failed %d times in a row (%s); circuit open for %.1f s, %d queued",
            self.receiver.name,
            self._consecutive_failures,
            exc,
            self.policy.open_s,
            len(self.queue),
        )
        await self._sleep(self.policy.open_s)
        self._circuit("half-open")


def _retryable(exc: BaseException) -> bool:
    """The notifiers' classifier (alerts/notifiers.py) decides: network, 429 and 5xx retry."""
    return isinstance(exc, DeliveryError) and exc.retryable


def _retry_after(exc: BaseException) -> float | None:
    return exc.retry_after_s if isinstance(exc, DeliveryError) else None


class Dispatcher:
    """Groups events and fans notifications out to every receiver; run inside an event loop."""

    def __init__(
        self,
        receivers: list[Receiver],
        groups: GroupPolicy = GroupPolicy(),
        policy: ReceiverPolicy = ReceiverPolicy(),
        *,
        runbook_base_url: str,
        grafana_url: str = "",
        tick_s: float = 0.1,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        observer: Observer | None = None,
    ) -> None:
        self._observer = observer
        self._channels = [_Channel(receiver, policy, clock, sleep) for receiver in receivers]
        self._clock = clock
        self._sleep = sleep
        self._groups: dict[str, _Group] = {}
        self._policy = groups
        self._runbook_base_url = runbook_base_url
        self._grafana_url = grafana_url
        self._tick_s = tick_s
        self._tasks: list[asyncio.Task[None]] = []
        #: Groups that cleared while inhibited, never announced.
        self.inhibited = 0
        self._session: aiohttp.ClientSession | None = None

    @property
    def stats(self) -> dict[str, ReceiverStats]:
        return {channel.receiver.name: channel.stats for channel in self._channels}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(channel.run(self._session)) for channel in self._channels]
        self._tasks.append(asyncio.create_task(self._tick_forever()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._session is not None:
            await self._session.close()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every group was announced and every queue is empty (tests, shutdown)."""
        deadline = self._clock() + timeout_s
        while self._clock() < deadline:
            self.flush()
            if all(g.notified or self._inhibited(g) for g in self._groups.values()) and not any(
                c.queue for c in self._channels
            ):
                return True
            await self._sleep(self._tick_s)
        return False

    def submit(self, events: list[AlertEvent]) -> None:
        """Record state changes; notifications follow from the group timers. Never raises."""
        try:
            now = self._clock()
            for event in events:
                group = self._groups.get(event.group_key)
                if event.state == "firing":
                    if group is None:
                        group = self._groups[event.group_key] = _Group(members={}, created=now, labels=event.group)
                    group.escalated |= group.notified and SEVERITY_ORDER.get(event.severity, 9) < group.worst()
                    group.members[event.dedup_key] = event
                    group.changed = True
                elif group is not None and event.dedup_key in group.members:
                    del group.members[event.dedup_key]
                    group.resolved.append(event)
                elif group is None:  # fired before a restart: the receiver still has it open
                    self._groups[event.group_key] = _Group(
                        members={}, created=now, labels=event.group, notified=True, resolved=[event]
                    )
            self.flush()
        except Exception:
            log.exception("alert dispatch failed on %d event(s)", len(events))

    def adopt(self, firing: list[AlertEvent]) -> None:
        """Alerts that were already announced before a restart: tracked (repeats, resolves), not resent."""
        now = self._clock()
        for event in firing:
            group = self._groups.setdefault(
                event.group_key, _Group(members={}, created=now, labels=event.group, notified=True, last_sent=now)
            )
            group.members[event.dedup_key] = event

    def flush(self, now: float | None = None) -> None:
        """Send what the group timers allow now."""
        now = self._clock() if now is None else now
        policy = self._policy
        for key in list(self._groups):
            group = self._groups[key]
            if not group.members:  # every member resolved
                if not group.notified and self._inhibited(group):  # cleared while muted: never paged
                    self.inhibited += 1
                    log.info("alert group %s cleared while inhibited; not announced", key)
                elif not group.notified:  # it fired and cleared before its group_wait: still announce it
                    self._send(key, "trigger", tuple(group.resolved), now, group)
                if group.notified:
                    self._send(key, "resolve", tuple(group.resolved), now, group)
                del self._groups[key]
            elif self._inhibited(group):
                continue
            elif not group.notified:
                if now - group.created >= policy.group_wait_s:
                    self._send(key, "trigger", self._members(group), now, group)
            elif group.escalated or (group.changed and now - group.last_sent >= policy.group_interval_s):
                self._send(key, "trigger", self._members(group), now, group)
            elif now - group.last_sent >= policy.repeat_interval_s:
                self._send(key, "trigger", self._members(group), now, group, repeat=True)

    def _inhibited(self, group: _Group) -> bool:
        """A critical group fires whose labels are a non-empty part of this non-critical group's."""
        if group.critical:
            return False
        return any(
            other is not group and other.critical and other.labels and other.labels.items() <= group.labels.items()
            for other in self._groups.values()
        )

    @staticmethod
    def _members(group: _Group) -> tuple[AlertEvent, ...]:
        """Worst first: most severe, then furthest past its threshold (the lead of the message)."""
        return tuple(
            sorted(
                group.members.values(),
                key=lambda e: (SEVERITY_ORDER.get(e.severity, 9), -e.excess),
            )
        )

    def _send(
        self,
        key: str,
        action: Literal["trigger", "resolve"],
        events: tuple[AlertEvent, ...],
        now: float,
        group: _Group,
        repeat: bool = False,
    ) -> None:
        lead = events[0]
        link = runbook_link(self._runbook_base_url, lead.runbook, lead.runbook_branch)
        notification = Notification(key, action, events, link, repeat, self._grafana_url)
        group.notified, group.last_sent, group.changed, group.escalated = True, now, False, False
        if self._observer is not None:
            self._observer(notification, now)
        for channel in self._channels:
            channel.put(notification)

    async def _tick_forever(self) -> None:
        while True:
            await self._sleep(self._tick_s)
            try:
                self.flush()
            except Exception:
                log.exception("alert group timers failed")
