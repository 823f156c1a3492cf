"""Example traces of an incident: a few of the worst traces in the alert's scope and window, so
the page opens real requests (`spanline trace ID`, the Grafana trace dashboard).

"Worst" follows the rule's signal: the slowest traces for latency, the costliest for spend, the
retried for rate limits, the failed for error and quality rates (the slowest when none failed).
Pipeline-health rules (no scope dimension of a span) get none.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from clickhouse_connect.driver.client import Client

from spanline.alerts.events import AlertEvent
from spanline.alerts.rules import Rule
from spanline.traces.fetch import SCOPE_PARAMETERS, client_runner, rank_traces

EXAMPLES = 3
#: The ranking that shows a metric's incident best; metrics absent here rank by failed traces.
RANK_BY_METRIC = {
    "ttft_p95_ms": "slowest",
    "latency_p95_ms": "slowest",
    "cost_usd": "costliest",
    "cost_per_request_usd": "costliest",
    "tier_share": "costliest",
    "rate_limited_rate": "retried",
}
PIPELINE_METRICS = frozenset({"consumer_lag_s", "dlq_rate"})


def example_rank(rule: Rule) -> str | None:
    """How to pick the rule's example traces; None for pipeline rules (no request to show)."""
    if rule.metric in PIPELINE_METRICS:
        return None
    return RANK_BY_METRIC.get(rule.metric, "failed")


def example_window(rule: Rule, event: AlertEvent) -> tuple[datetime, datetime]:
    """From the rule's window before the incident started to the evaluated minute's end."""
    if rule.window == "today":
        since = event.started_at.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        since = event.started_at - rule.window
    return since, event.at + timedelta(microseconds=1)


def example_trace_ids(client: Client, database: str, rule: Rule, event: AlertEvent) -> list[str]:
    """Up to :data:`EXAMPLES` trace ids in the event's scope and window, worst first."""
    rank = example_rank(rule)
    if rank is None:
        return []
    scope = {name: value for name, value in event.scope.items() if name in SCOPE_PARAMETERS}
    since, until = example_window(rule, event)
    run = client_runner(client)
    ids = [t.trace_id for t in rank_traces(run, database, rank, since, until, EXAMPLES, scope)]
    if not ids and rank != "slowest":  # e.g. an embedding mismatch: nothing failed, show requests
        ids = [t.trace_id for t in rank_traces(run, database, "slowest", since, until, EXAMPLES, scope)]
    return ids
