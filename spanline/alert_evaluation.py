"""``spanline evaluate-alerts``: replay simulated weeks per rate and score the pages.

For each rate, the independent traffic model (simulator/traffic_model.py) with the incident
plan (simulator/traffic_overlays.py) is replayed through the worker's code into the real
evaluator (spanline/alert_replay.py). Its alert events go through the real dispatcher
(alerts/dispatch.py: grouping, inhibition, escalation) on an event-time clock; a *page* is a
notification that opens an incident (a group's first trigger; updates, escalations and repeats of
an open group are the same incident). Pages are scored against the plan:

* **false page**: a page outside every paging incident's window + ``GRACE`` (blips and drifts
  excuse nothing: they must not page);
* per paging incident: **detected** (its scenario's rule paged inside the window + grace),
  **once** (one page of that rule), **delay** (incident start → first page, event minutes),
  **branch** (the first page's runbook and diagnosis branch are the scenario's);
* per blip and drift: **quiet** (no page inside its window + grace that a paging incident's
  rules do not account for).

The targets (issue 16): 0 false pages at every rate; every incident detected once with its branch;
every blip and drift quiet. The command exits 1 when any is missed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from statistics import median

from rich.table import Table

from spanline.alert_replay import WARMUP_HOURS, Replay, replay
from spanline.alerts.dispatch import Dispatcher, GroupPolicy
from spanline.alerts.events import AlertEvent
from spanline.alerts.notifiers import Notification
from spanline.simulator.traffic_model import TrafficModel
from spanline.simulator.traffic_overlays import GAP, Overlay, incident_plan
from spanline.streams.pricing import PriceCatalog

#: Monday 00:00 UTC: a replayed week starts with five weekdays, then the weekend.
WEEK_START = datetime(2026, 11, 2, tzinfo=UTC)
#: After an incident ends, pages of its rules still belong to it (hourly windows drain, resolves lag).
GRACE = timedelta(minutes=40)
#: The first incident starts this long after the warm-up (baselines have their minimum hours).
FIRST_INCIDENT_AFTER = timedelta(minutes=20)


@dataclass(frozen=True)
class Page:
    rule: str
    at: datetime
    runbook: str
    branch: str
    scope: str = ""  # the lead alert's scope, e.g. "tenant_id=northwind feature=chat"

    @property
    def runbook_branch_text(self) -> str:
        return f"{self.runbook} → {self.branch}"


@dataclass(frozen=True)
class IncidentScore:
    overlay: Overlay
    pages: list[Page]  # of the expected rule (paging incidents) or of any rule (blips, drifts)

    @property
    def detected(self) -> bool:
        return bool(self.pages)

    @property
    def once(self) -> bool:
        return len(self.pages) == 1

    @property
    def delay_min(self) -> float | None:
        return (self.pages[0].at - self.overlay.start).total_seconds() / 60.0 if self.pages else None

    @property
    def right_branch(self) -> bool:
        expected = self.overlay.expected
        if expected is None or not self.pages:
            return False
        return (self.pages[0].runbook, self.pages[0].branch) == (expected.expected_runbook, expected.expected_branch)

    @property
    def met(self) -> bool:
        if self.overlay.expected is None:
            return not self.pages
        return self.once and self.right_branch


@dataclass(frozen=True)
class RateScore:
    requests_per_s: float
    days: float
    spans: int
    false_pages: dict[str, list[Page]]
    incidents: list[IncidentScore]

    @property
    def met(self) -> bool:
        return not any(self.false_pages.values()) and all(i.met for i in self.incidents)


class _PageLog:
    """Observes the dispatcher's notifications and keeps the pages: a group's first trigger opens
    an incident; later triggers (updates, escalations, repeats) belong to it until its resolve."""

    def __init__(self) -> None:
        self.pages: list[Page] = []
        self._open: set[str] = set()

    def __call__(self, notification: Notification, now: float) -> None:
        key = notification.group_key
        if notification.action == "resolve":
            self._open.discard(key)
        elif key not in self._open:
            self._open.add(key)
            lead = notification.lead
            scope = " ".join(f"{k}={v}" for k, v in lead.scope.items())
            self.pages.append(
                Page(lead.rule, datetime.fromtimestamp(now, UTC), lead.runbook, lead.runbook_branch, scope)
            )


def pages_of(events: Sequence[AlertEvent]) -> list[Page]:
    """The pages the dispatcher opens for these events, each minute's group wait included."""
    log = _PageLog()
    clock = [0.0]  # event time: each minute's events are submitted at their minute
    dispatcher = Dispatcher([], runbook_base_url="", clock=lambda: clock[0], observer=log)
    wait = GroupPolicy().group_wait_s
    for at, minute in groupby(sorted(events, key=lambda e: e.at), key=lambda e: e.at):
        clock[0] = at.timestamp()
        dispatcher.submit(list(minute))
        dispatcher.flush(clock[0] + wait)
    dispatcher.flush(clock[0] + 3600.0)  # what still fires at the end is announced too
    return log.pages


def score(result: Replay, plan: Sequence[Overlay], days: float) -> RateScore:
    pages = pages_of(result.events)
    excused: set[int] = set()  # pages a paging incident accounts for (its rule or one it may fire)
    for overlay in plan:
        if (expected := overlay.expected) is not None:
            allowed = {expected.expected_rule, *expected.also_fires, *overlay.also_fires}
            excused.update(i for i in _within(pages, overlay) if pages[i].rule in allowed)
    incidents = []
    for overlay in plan:
        expected = overlay.expected
        if expected is None:  # a blip or drift: every page near it that no paging incident explains
            incidents.append(IncidentScore(overlay, [pages[i] for i in _within(pages, overlay) if i not in excused]))
        else:
            own = [pages[i] for i in _within(pages, overlay) if pages[i].rule == expected.expected_rule]
            incidents.append(IncidentScore(overlay, own))
    false_pages: dict[str, list[Page]] = {}
    for i, page in enumerate(pages):
        if i not in excused:
            false_pages.setdefault(page.rule, []).append(page)
    evaluated_days = (result.evaluated_until - result.evaluated_from) / timedelta(days=1)
    return RateScore(result.requests_per_s, evaluated_days or days, result.spans, false_pages, incidents)


def _within(pages: list[Page], overlay: Overlay) -> list[int]:
    return [i for i, page in enumerate(pages) if overlay.start <= page.at <= overlay.end + GRACE]


def evaluate(
    rates: Sequence[float],
    days: float,
    *,
    warmup_hours: float = WARMUP_HOURS,
    incidents: tuple[str, ...] = (),
    gap: timedelta = GAP,
    seed: int = 1,
    progress: Callable[[float, int, int], None] | None = None,
) -> list[RateScore]:
    """Replay ``days`` per rate with the incident plan and score each rate's pages."""
    if days * 24 <= warmup_hours:
        raise ValueError(f"--days {days:g} leaves nothing to evaluate after the {warmup_hours:g}-hour warm-up")
    first = WEEK_START + timedelta(hours=warmup_hours) + FIRST_INCIDENT_AFTER
    plan = incident_plan(first, WEEK_START + timedelta(days=days), incidents, gap)
    catalog = PriceCatalog.load()
    scores = []
    for rate in rates:
        model = TrafficModel(start=WEEK_START, requests_per_s=rate, seed=seed, overlays=plan)
        report: Callable[[int, int], None] | None = None
        if progress is not None:
            report = _bind(progress, rate)
        scores.append(score(replay(model, days, catalog, report, warmup_hours), plan, days))
    return scores


def _bind(progress: Callable[[float, int, int], None], rate: float) -> Callable[[int, int], None]:
    return lambda done, total: progress(rate, done, total)


def false_page_table(scores: Sequence[RateScore]) -> Table:
    table = Table(title=f"False pages (outside every incident's window + {GRACE // timedelta(minutes=1)} min)")
    table.add_column("rule")
    for s in scores:
        table.add_column(f"{s.requests_per_s:g} req/s ({s.days:.2f} d)", justify="right")
    rules = sorted({rule for s in scores for rule in s.false_pages})
    for rule in rules:
        table.add_row(rule, *(_per_day(len(s.false_pages.get(rule, [])), s.days) for s in scores))
    table.add_row("all rules", *(_per_day(sum(map(len, s.false_pages.values())), s.days) for s in scores))
    return table


def incident_table(scores: Sequence[RateScore]) -> Table:
    table = Table(title="Incidents: paged / paged once / right branch, delay (event min, median and max)")
    table.add_column("incident")
    table.add_column("must page")
    for s in scores:
        table.add_column(f"{s.requests_per_s:g} req/s")
    names = list(dict.fromkeys(i.overlay.name for s in scores for i in s.incidents))
    for name in names:
        sample = next(i.overlay for s in scores for i in s.incidents if i.overlay.name == name)
        expected = sample.expected
        must = f"{expected.expected_rule} → {expected.expected_branch}" if expected else "nothing"
        table.add_row(name, must, *(_cell([i for i in s.incidents if i.overlay.name == name]) for s in scores))
    return table


def false_page_list(scores: Sequence[RateScore], limit: int = 25) -> Table:
    """Each false page, to see why it paged (``spanline simulate`` cannot replay this model; the
    rule, scope and diagnosis branch point at the figure that crossed)."""
    table = Table(title="False pages, first of each rate")
    for name in ("req/s", "event time", "rule", "scope", "runbook → branch"):
        table.add_column(name)
    for s in scores:
        pages = sorted((p for ps in s.false_pages.values() for p in ps), key=lambda p: p.at)
        for page in pages[:limit]:
            table.add_row(
                f"{s.requests_per_s:g}", f"{page.at:%a %H:%M}", page.rule, page.scope, page.runbook_branch_text
            )
    return table


def missed_incident_list(scores: Sequence[RateScore]) -> Table:
    """Each incident that missed its target and how (not paged, paged more than once, the wrong
    branch, a blip or drift that paged), with its event time to replay it
    (``spanline evaluate-alerts --days`` up to that day)."""
    table = Table(title="Incidents that missed their target")
    for name in ("req/s", "incident", "event time", "what happened"):
        table.add_column(name)
    for s in scores:
        for run in s.incidents:
            if not run.met:
                table.add_row(f"{s.requests_per_s:g}", run.overlay.name, f"{run.overlay.start:%a %H:%M}", _miss(run))
    return table


def _miss(run: IncidentScore) -> str:
    pages = ", ".join(f"{p.rule} {p.at:%H:%M} ({p.runbook_branch_text})" for p in run.pages)
    if run.overlay.expected is None:
        return f"paged: {pages}"
    if not run.detected:
        return "not paged"
    if not run.once:
        return f"paged {len(run.pages)} times: {pages}"
    return f"wrong branch: {pages}"


def _per_day(count: int, days: float) -> str:
    return f"{count} ({count / days:.2f}/d)" if count else "0"


def _cell(runs: list[IncidentScore]) -> str:
    if not runs:
        return "—"
    n = len(runs)
    if runs[0].overlay.expected is None:
        paged = sum(r.detected for r in runs)
        text = f"quiet {n - paged}/{n}"
        return (
            text if not paged else f"[red]{text}[/red] ({', '.join(sorted({p.rule for r in runs for p in r.pages}))})"
        )
    delays = [d for r in runs if (d := r.delay_min) is not None]
    timing = f", {median(delays):.0f} (max {max(delays):.0f}) min" if delays else ""
    text = f"{sum(r.detected for r in runs)}/{sum(r.once for r in runs)}/{sum(r.right_branch for r in runs)} of {n}"
    return (text if all(r.met for r in runs) else f"[red]{text}[/red]") + timing
