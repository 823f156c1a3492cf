"""Alert rules as data (``alerts/rules.yaml``), validated on load (docs/requirements.md §5).

A rule watches one metric per scope (a combination of grain dimensions) over a window, tests a
condition, and pages when the condition has held for ``for``; it resolves once the condition has
been false for ``keep_firing_for`` (hysteresis against flapping). ``also`` adds clauses on other
metrics that must hold as well (tool storm: error rate high AND steps per trace rising).
Rates with an error budget use a ``burn_rate`` condition instead: tiers of (short, long) windows,
each paging at its own severity, so a sustained outage pages fast at critical, a slow burn later at
high, and a blip that lifts one short window alone never pages.
Errors name the rule and the field, so a typo in YAML is a one-line fix.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from spanline.alerts.durations import parse_duration
from spanline.alerts.metrics import METRICS, PIPELINE_METRICS, Metric
from spanline.errors import ConfigError
from spanline.windows.aggregate import SLOT_SECONDS
from spanline.yaml_file import read_yaml

RULES_FILE = Path(__file__).with_name("rules.yaml")
RUNBOOKS_DIR = Path(__file__).with_name("runbooks")
SCOPE_DIMENSIONS = ("tenant_id", "service", "feature", "provider", "model_requested", "route", "kind")
#: Dimensions that are map keys of a metric (alerts/metrics.py ``per_key``), not grain columns.
KEY_DIMENSIONS = ("index_name",)
Severity = Literal["critical", "high", "medium", "low"]
#: Severities, worst first (a page's order and the escalation of a firing alert).
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3}
Op = Literal[">", ">=", "<", "<="]
_SLUG = re.compile(r"^[a-z][a-z0-9_-]*$")
#: Which metric each contract field limits (spanline/contracts.yaml).
CONTRACT_METRICS = {
    "p95_latency_ms": "latency_p95_ms",
    "p95_ttft_ms": "ttft_p95_ms",
    "max_cost_per_request_usd": "cost_per_request_usd",
    "expected_recall_at_k": "recall_at_k",
    "daily_budget_usd": "cost_usd",
    "stage_p95_ms": "stage_p95_ms",
}
#: The metric each provider rate limit caps.
RATE_LIMIT_METRICS = {"tokens_per_minute": "llm_tokens", "requests_per_minute": "llm_requests"}

#: A duration written like 30s, 5m, 6h or 7d.
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
#: How far before now a spend clause's ``long_window`` and the gap of one window after its noise
#: reference may reach: the evaluator's frame ring holds this and the reference (alerts/evaluator.py).
SPEND_WINDOWS_LIMIT = timedelta(minutes=40)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Baseline(_Strict):
    """What "normal" is: ``trailing`` = all hours over ``over`` before now (rolling averages);
    ``same_hour`` = the same hour of day on each of the previous days within ``over``
    (diurnal traffic compared with itself). ``min_hours`` of history are needed to judge;
    ``fallback`` is used until they exist (a fresh start)."""

    kind: Literal["trailing", "same_hour"]
    over: Duration
    min_hours: int = Field(3, ge=1)
    fallback: Baseline | None = None


class Threshold(_Strict):
    type: Literal["threshold"]
    op: Op
    value: float


class RatioToBaseline(_Strict):
    """value / baseline op ``value``; ``min_delta`` = also differ by at least this much (absolute);
    ``min_z`` = and by at least that many standard errors: of a proportion (see
    :class:`PointsChange`); for spend (``cost_usd``), of the compound sum of overdispersed
    request counts and heavy-tailed costs (:mod:`spanline.alerts.spend_noise`); for a quantile
    (p95 TTFT), the count of samples above the baseline quantile must be as unlikely as a normal
    variable ``min_z`` standard errors up (an exact sign test,
    :func:`spanline.alerts.conditions.exceedance_p`).

    ``long_window`` (spend only): a rise whose window is not significant may show it over this
    longer window ending now instead (its ratio, standard errors and spread all judged there): a
    quiet feature's 3x that lasts 30 minutes is no larger per 10 minutes than a burst of a few
    costly requests, only longer."""

    type: Literal["ratio_to_baseline"]
    baseline: Baseline
    op: Op
    value: float = Field(gt=0)
    min_delta: float = Field(0.0, ge=0)
    min_z: float = Field(0.0, ge=0)
    long_window: Duration | None = None


class PointsChange(_Strict):
    """value − baseline in percentage points: ``points: -3`` fires on a drop of 3 points or more.

    ``min_z`` (proportions only) also asks the change to be at least that many standard errors of
    the baseline proportion at the window's volume, √(p(1−p)/n): at 100 calls a 50 % share moves
    ±5 points by chance alone, so a 10-point rule with ``min_z: 3`` waits for 225 calls. Default 0
    (off).
    """

    type: Literal["points_change"]
    baseline: Baseline
    points: float
    min_z: float = Field(0.0, ge=0)

    @field_validator("points")
    @classmethod
    def _non_zero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("points must be non-zero: negative watches a drop, positive a rise")
        return value


class DayOverDay(_Strict):
    """The last 24 h against the 24 h before them: ``value: 1.2`` = +20 %. Judged once
    ``min_hours`` of those 24 h before were watched; a total (spend) over them is scaled to 24 h."""

    type: Literal["day_over_day"]
    op: Op
    value: float = Field(gt=0)
    min_hours: int = Field(20, ge=1, le=24)


class ContractLimit(_Strict):
    """value op ``factor`` × the scope's contract field (spanline/contracts.yaml)."""

    type: Literal["contract"]
    field: Literal[
        "p95_latency_ms",
        "p95_ttft_ms",
        "max_cost_per_request_usd",
        "expected_recall_at_k",
        "daily_budget_usd",
        "stage_p95_ms",
    ]
    op: Op
    factor: float = Field(1.0, gt=0)


class RateLimitShare(_Strict):
    """The window's mean per minute op ``factor`` × the scope's provider limit (contracts' rate_limits):
    ``factor: 0.8`` warns at 80 % of tokens_per_minute or requests_per_minute."""

    type: Literal["rate_limit"]
    field: Literal["tokens_per_minute", "requests_per_minute"]
    op: Op = ">"
    factor: float = Field(gt=0)


class NewKey(_Strict):
    """A map key (e.g. a ``model_response``) not seen in ``lookback`` for this scope."""

    type: Literal["new_key"]
    lookback: Duration


class BurnTier(_Strict):
    """One severity of a burn-rate condition: the rate over ``long`` and over ``short`` are both
    at least ``burn`` × the error budget. The long window says it is sustained, the short one that
    it is still happening (the page clears soon after). ``sustained``: also, within ``long``, the
    10-second slots whose own rate reaches that threshold (with at least one failing call) add up
    to at least this long, so a blip that lifts a minute's rate without lasting never pages."""

    severity: Severity
    burn: float = Field(gt=1)
    long: Duration
    short: Duration
    sustained: Duration | None = None

    @model_validator(mode="after")
    def _windows(self) -> BurnTier:
        if (
            not timedelta(minutes=1) <= self.short < self.long
            or (self.long.total_seconds() % 60)
            or (self.short.total_seconds() % 60)
        ):
            raise ValueError("short and long are whole minutes, short shorter than long")
        if self.sustained is not None and (
            not timedelta(0) < self.sustained <= self.long or self.sustained.total_seconds() % SLOT_SECONDS
        ):
            raise ValueError(f"sustained is a multiple of {SLOT_SECONDS}s (the slots), above 0 and at most long")
        return self


class BurnRate(_Strict):
    """Multi-window, multi-burn-rate paging on a proportion with an error budget of
    1 − ``objective`` (the share of logical calls that may fail). Tiers are listed worst first;
    a scope pages at the first tier that holds, and escalates if a worse one holds later.
    ``min_z``: the long window's rate must also exceed the budget by that many standard errors
    at its volume (binomial), so a quiet scope's 2 failures in 5 calls do not page."""

    type: Literal["burn_rate"]
    objective: float = Field(gt=0, lt=1)
    tiers: list[BurnTier] = Field(min_length=1)
    min_z: float = Field(3.0, ge=0)

    @property
    def budget(self) -> float:
        return 1.0 - self.objective

    @model_validator(mode="after")
    def _ordered(self) -> BurnRate:
        ranks = [SEVERITY_ORDER[tier.severity] for tier in self.tiers]
        if ranks != sorted(set(ranks)):
            raise ValueError("tiers are listed worst severity first, one tier per severity")
        if any(tier.burn * self.budget >= 1 for tier in self.tiers):
            raise ValueError("burn × (1 − objective) must stay below 1: no rate could reach it")
        return self


Condition = Annotated[
    Threshold | RatioToBaseline | PointsChange | DayOverDay | ContractLimit | RateLimitShare | NewKey | BurnRate,
    Field(discriminator="type"),
]


class Clause(_Strict):
    """One metric test: metric (+ map ``key``) over ``window`` ("today" = since UTC midnight)."""

    metric: str
    key: str | None = None
    window: Literal["today"] | Duration = timedelta(minutes=1)
    condition: Condition

    @model_validator(mode="after")
    def _fits_metric(self) -> Clause:
        metric = METRICS.get(self.metric)
        if metric is None:
            raise ValueError(f"unknown metric {self.metric!r}; known: {', '.join(sorted(METRICS))}")
        if metric.needs_key and not self.key:
            raise ValueError(f"metric {self.metric!r} needs a key (e.g. key: large)")
        if not metric.needs_key and self.key:
            raise ValueError(f"metric {self.metric!r} takes no key")
        condition = self.condition
        if (metric.kind == "new_keys") != isinstance(condition, NewKey):
            raise ValueError("a new_key condition goes with a new_keys metric (new_model_versions) and only there")
        if isinstance(condition, PointsChange) and metric.unit != "ratio":
            raise ValueError(f"points_change needs a ratio metric; {self.metric!r} is in {metric.unit}")
        if isinstance(condition, BurnRate):
            if (metric.kind, metric.unit) != ("ratio", "ratio"):
                raise ValueError(f"burn_rate needs a proportion; {self.metric!r} is not one")
            if self.window != max(tier.long for tier in condition.tiers):
                raise ValueError("a burn_rate clause's window is its longest tier's long window")
            if any(tier.sustained for tier in condition.tiers) and not metric.slot_numerator:
                with_slots = ", ".join(name for name, m in METRICS.items() if m.slot_numerator)
                raise ValueError(f"sustained needs per-slot figures; {self.metric!r} has none ({with_slots} do)")
        proportion = (metric.kind, metric.unit) == ("ratio", "ratio")
        spend = (metric.kind, metric.unit) == ("total", "usd") and isinstance(condition, RatioToBaseline)
        quantile = metric.kind == "percentile" and isinstance(condition, RatioToBaseline)
        if getattr(condition, "min_z", 0) and not (proportion or spend or quantile):
            raise ValueError(
                "min_z tests a proportion's change, or a spend's or a quantile's ratio to its baseline;"
                f" {self.metric!r} with {condition.type} is none of them"
            )
        if isinstance(condition, RatioToBaseline) and condition.long_window is not None:
            _check_long_window(condition, condition.long_window, self.window, spend)
        if isinstance(condition, ContractLimit) and CONTRACT_METRICS[condition.field] != self.metric:
            raise ValueError(
                f"contract field {condition.field} limits {CONTRACT_METRICS[condition.field]}, not {self.metric}"
            )
        if isinstance(condition, RateLimitShare) and RATE_LIMIT_METRICS[condition.field] != self.metric:
            raise ValueError(
                f"rate limit {condition.field} limits {RATE_LIMIT_METRICS[condition.field]}, not {self.metric}"
            )
        if isinstance(condition, DayOverDay) and metric.kind != "total":
            raise ValueError("day_over_day compares totals (cost_usd)")
        if self.window == "today" and metric.kind != "total":
            raise ValueError("window 'today' is for totals (spend so far today)")
        if isinstance(self.window, timedelta) and (
            self.window < timedelta(minutes=1) or self.window.total_seconds() % 60
        ):
            raise ValueError("window must be whole minutes")
        return self

    @property
    def spec(self) -> Metric:
        return METRICS[self.metric]


def _check_long_window(
    condition: RatioToBaseline, long_window: timedelta, window: Literal["today"] | timedelta, spend: bool
) -> None:
    if not (spend and condition.min_z):
        raise ValueError("long_window widens a spend clause's significance test (cost_usd with min_z)")
    if window == "today" or long_window <= window or long_window.total_seconds() % 60:
        raise ValueError("long_window must be whole minutes, longer than the clause's window")
    if long_window + window > SPEND_WINDOWS_LIMIT:
        limit = SPEND_WINDOWS_LIMIT // timedelta(minutes=1)
        raise ValueError(f"long_window plus window may be {limit} minutes at most (the evaluator keeps no more)")


class Rule(Clause):
    """One alert rule; the main clause is the one the page reports (value, threshold)."""

    name: str
    description: str
    severity: Severity
    runbook: str
    scope: list[str]
    group_by: list[str] | None = None
    for_: Duration = Field(timedelta(0), alias="for")
    keep_firing_for: Duration = timedelta(minutes=5)
    min_traffic: float = Field(0.0, ge=0)
    also: list[Clause] = Field(default_factory=list)
    summary: str

    @field_validator("name", "runbook")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(f"{value!r} must be lower-case letters, digits, '-' or '_'")
        return value

    @model_validator(mode="after")
    def _scope(self) -> Rule:
        unknown = [d for d in self.scope if d not in (*SCOPE_DIMENSIONS, *KEY_DIMENSIONS)]
        if unknown:
            raise ValueError(f"scope dimension(s) {', '.join(unknown)} unknown; use {', '.join(SCOPE_DIMENSIONS)}")
        for clause in self.clauses:
            keyed = clause.spec.per_key
            if keyed is not None and keyed not in self.scope:
                raise ValueError(f"metric {clause.metric!r} is per {keyed}: put {keyed} in the scope")
            if keyed is None and any(d in KEY_DIMENSIONS for d in self.scope):
                raise ValueError(f"metric {clause.metric!r} has no {', '.join(KEY_DIMENSIONS)} dimension")
        if len(set(self.scope)) != len(self.scope):
            raise ValueError("scope lists a dimension twice")
        outside = [d for d in self.group_by or [] if d not in self.scope]
        if outside:
            raise ValueError(f"group_by dimension(s) {', '.join(outside)} are not in the scope")
        pipeline = [c.metric for c in self.clauses if c.metric in PIPELINE_METRICS]
        if pipeline and (self.scope or len(pipeline) != len(self.clauses)):
            raise ValueError(f"pipeline metric(s) {', '.join(pipeline)} are worker-wide: scope [] and no span metrics")
        if any(isinstance(c.condition, ContractLimit) for c in self.clauses) and "tenant_id" not in self.scope:
            raise ValueError("contract conditions need tenant_id in the scope (contracts are per tenant)")
        if isinstance(self.condition, BurnRate) and self.severity != self.condition.tiers[0].severity:
            raise ValueError("a burn_rate rule's severity is its worst tier's (the worst it pages)")
        if any(isinstance(c.condition, BurnRate) for c in self.also):
            raise ValueError("burn_rate is a main condition (it sets the page's severity), not an `also` clause")
        if (
            any(getattr(c.condition, "field", None) == "stage_p95_ms" for c in self.clauses)
            and "kind" not in self.scope
        ):
            raise ValueError("stage budgets are per span kind: put kind in the scope")
        needed = {"tenant_id", "provider", "model_requested"}
        if any(isinstance(c.condition, RateLimitShare) for c in self.clauses) and not needed <= set(self.scope):
            raise ValueError(
                "rate limits are per tenant key and model: the scope needs tenant_id, provider, model_requested"
            )
        if not (RUNBOOKS_DIR / f"{self.runbook}.md").is_file():
            raise ValueError(f"runbook {self.runbook!r} has no file alerts/runbooks/{self.runbook}.md")
        return self

    @property
    def clauses(self) -> list[Clause]:
        return [self, *self.also]

    @property
    def grouping(self) -> tuple[str, ...]:
        """Dimensions one notification groups by (an outage on 50 models of a provider = one page)."""
        return tuple(self.scope if self.group_by is None else self.group_by)

    @property
    def pipeline(self) -> bool:
        return self.metric in PIPELINE_METRICS


class RuleSet(_Strict):
    rules: list[Rule]

    @model_validator(mode="after")
    def _unique(self) -> RuleSet:
        names = [rule.name for rule in self.rules]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"rule name(s) used twice: {', '.join(duplicated)}")
        return self


def load_rules(path: Path | None = None) -> list[Rule]:
    """Rules from ``path`` (default: the bundled alerts/rules.yaml); ConfigError names rule and field."""
    path = path or RULES_FILE
    document = read_yaml(path, "alert rules")
    try:
        return RuleSet.model_validate(document).rules
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + "; ".join(_explain(error, document) for error in exc.errors())) from exc


def _explain(error: ErrorDetails, document: object) -> str:
    """``rule 'latency_spike' field 'condition.op': Input should be '>', ...``."""
    location = list(error["loc"])
    where = "rules file"
    if len(location) >= 2 and location[0] == "rules" and isinstance(location[1], int):
        index = location[1]
        entries = document.get("rules", []) if isinstance(document, dict) else []
        name = entries[index].get("name") if index < len(entries) and isinstance(entries[index], dict) else None
        where = f"rule {name!r}" if name else f"rule #{index + 1}"
        location = location[2:]
    # Discriminated unions add the chosen variant's tag to the path; it is not a YAML field.
    field = ".".join(str(part) for part in location if part not in _VARIANT_TAGS)
    return f"{where} field {field or '(rule)'!r}: {error['msg']}"


_VARIANT_TAGS = {"threshold", "ratio_to_baseline", "points_change", "day_over_day", "contract", "new_key", "burn_rate"}
