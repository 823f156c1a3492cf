"""``spanline alerts validate|list``: check the rule and contract files, show the rules."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from rich.table import Table

from spanline.alerts.durations import format_duration
from spanline.alerts.rules import Rule, load_rules
from spanline.contracts import load_contracts


def validate(rules_path: Path | None, contracts_path: Path | None) -> str:
    """A one-line verdict; invalid files raise ConfigError naming the rule and field."""
    rules = load_rules(rules_path)
    contracts = load_contracts(contracts_path)
    runbooks = sorted({rule.runbook for rule in rules})
    return (
        f"{len(rules)} rules valid ({len(runbooks)} runbooks: {', '.join(runbooks)}); {len(contracts)} contracts valid"
    )


def rules_table(rules_path: Path | None = None) -> Table:
    table = Table(title="alert rules", show_lines=False)
    for column in (
        "rule",
        "severity",
        "metric",
        "scope",
        "condition",
        "window",
        "for",
        "keep firing",
        "min traffic",
        "runbook",
    ):
        table.add_column(column, overflow="fold")
    for rule in load_rules(rules_path):
        table.add_row(
            rule.name,
            rule.severity,
            rule.metric + (f"[{rule.key}]" if rule.key else ""),
            ", ".join(rule.scope) or "(worker)",
            describe_condition(rule),
            rule.window if isinstance(rule.window, str) else format_duration(rule.window),
            format_duration(rule.for_),
            format_duration(rule.keep_firing_for),
            f"{rule.min_traffic:g}",
            rule.runbook,
        )
    return table


def describe_condition(rule: Rule) -> str:
    parts = []
    for clause in rule.clauses:
        condition = clause.condition
        data = condition.model_dump(exclude={"type"})
        baseline = data.pop("baseline", None)
        op, value = data.pop("op", None), data.pop("value", None)
        text = (
            condition.type
            + (f" {op} {value:g}" if op and value is not None else f" {op}" if op else "")
            + "".join(f" {k}={_short(v)}" for k, v in data.items() if v not in (None, 0.0))
        )
        if baseline:
            text += f" vs {baseline['kind']} {format_duration(baseline['over'])}"
            if baseline.get("fallback"):
                text += f" (else {baseline['fallback']['kind']} {format_duration(baseline['fallback']['over'])})"
        parts.append(text if clause is rule else f"and {clause.metric}: {text}")
    return "; ".join(parts)


def _short(value: object) -> str:
    return format_duration(value) if isinstance(value, timedelta) else str(value)
