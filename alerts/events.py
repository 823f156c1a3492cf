"""What the evaluator emits: one AlertEvent per state change of one rule on one scope."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

State = Literal["firing", "resolved"]
#: PagerDuty's limit on dedup_key length.
MAX_DEDUP_KEY = 255


def dedup_key(rule: str, scope: dict[str, str]) -> str:
    """Stable key of one incident: the rule and its scope, e.g. ``latency_spike/tenant_id=acme``.

    The same rule on the same scope always maps to the same key (restarts, replicas), so a
    receiver (PagerDuty) keeps one incident and a resolve closes it. Over-long keys keep a
    readable prefix and a hash of the whole.
    """
    text = "/".join([rule, *(f"{name}={scope[name]}" for name in sorted(scope))])
    if len(text) <= MAX_DEDUP_KEY:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text[: MAX_DEDUP_KEY - 17]}~{digest}"


@dataclass(frozen=True)
class AlertEvent:
    """A rule started firing on a scope, or resolved; ``at`` is the end of the evaluated minute."""

    rule: str
    severity: str
    state: State
    at: datetime
    started_at: datetime
    dedup_key: str
    scope: dict[str, str]
    group: dict[str, str]
    value: float
    threshold: float
    summary: str
    description: str
    runbook: str
    runbook_branch: str = ""
    diagnosis: dict[str, Any] = field(default_factory=dict)
    #: A few of the worst traces in the scope and window (alerts/examples.py), worst first.
    example_trace_ids: tuple[str, ...] = ()
    #: How far past its threshold (≥ 1: value/threshold, or threshold/value for a fall): orders
    #: a group's scopes worst first across metrics of different units. 0 when it has no ratio
    #: (a zero threshold).
    excess: float = 0.0

    @property
    def tenant_id(self) -> str:
        return self.scope.get("tenant_id", "")

    @property
    def group_key(self) -> str:
        """Key of the notification group this event belongs to (rule + group_by dimensions)."""
        return dedup_key(self.rule, self.group)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        data["started_at"] = self.started_at.isoformat()
        return data
