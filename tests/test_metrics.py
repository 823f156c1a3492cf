"""Spanline's Prometheus metrics: named by Prometheus conventions, bounded labels, all documented."""

from __future__ import annotations

import re
from pathlib import Path

from spanline.metrics import ALERTING_METRICS, RECEIVER_METRICS, WORKER_METRICS

README = Path(__file__).resolve().parents[1] / "README.md"
METRICS = (*RECEIVER_METRICS, *WORKER_METRICS, *ALERTING_METRICS)
FAMILIES = [family for metric in METRICS for family in metric.describe()]
EXPOSED_NAME = {"counter": "{}_total", "gauge": "{}", "histogram": "{}"}
#: Every label a Spanline metric may carry: bounded by code or configuration, never by traffic.
BOUNDED_LABELS = {"endpoint", "outcome", "kind", "topic", "partition", "rule", "state", "receiver", "retryable"}


def test_names_follow_prometheus_conventions() -> None:
    for family in FAMILIES:
        assert re.fullmatch(r"spanline_(receiver|worker|alert|notifier|notifications)[a-z_]*", family.name), family.name
        assert not family.name.endswith("_total"), f"{family.name}: the client adds _total to counters"
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), f"{family.name}: histograms here measure seconds"
        assert family.documentation, f"{family.name} has no help text"


def test_labels_are_bounded_and_never_a_tenant() -> None:
    for metric in METRICS:
        labels = set(metric._labelnames)  # type: ignore[attr-defined]  # the client keeps label names private
        assert labels <= BOUNDED_LABELS, f"{metric} has unbounded labels {labels - BOUNDED_LABELS}"


def test_every_metric_has_a_row_in_the_readme() -> None:
    text = README.read_text()
    missing = [
        EXPOSED_NAME[f.type].format(f.name)
        for f in FAMILIES
        if f"| `{EXPOSED_NAME[f.type].format(f.name)}` |" not in text
    ]
    assert missing == [], f"README's Prometheus metrics table lacks {missing}"
