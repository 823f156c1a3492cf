"""The "Spanline pipeline" dashboard: the receiver's and the worker's own Prometheus metrics
(spanline/metrics.py), read through a Prometheus datasource the viewer picks.

The other dashboards read spans in ClickHouse; this one watches the pipeline that stores them:
requests and items by outcome, spans stored and dead-lettered, latency histograms, consumer
lag, retries, the alert evaluator and the notifiers. Its datasource is a variable of type
``prometheus`` (default: the ``spanline-prometheus`` datasource docker-compose provisions), so
the Prometheus a team already runs serves it as well. tests/test_dashboard_generate.py checks
that every metric it queries exists and that every Spanline metric is on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from grafana_foundation_sdk.builders import common, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models

from spanline.dashboards.model import Step

UID = "spanline-pipeline"
TITLE = "Spanline pipeline"
#: The datasource docker-compose provisions (dashboards/provisioning/datasources/spanline-prometheus.yaml).
DATASOURCE_UID = "spanline-prometheus"
DATASOURCE = dashboard_models.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "[$__rate_interval]"
GRID_WIDTH = 24


@dataclass(frozen=True)
class Series:
    """One PromQL query of a panel and how its series are named (``{{label}}`` templates)."""

    expr: str
    legend: str


@dataclass(frozen=True)
class MetricPanel:
    title: str
    description: str
    kind: Literal["timeseries", "stat"]
    series: tuple[Series, ...]
    unit: str = "short"
    base: str = "green"
    thresholds: tuple[Step, ...] = ()
    width: int = 8
    height: int = 8


def rate(metric: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{RATE}))"


def quantiles(histogram: str, what: str) -> tuple[Series, ...]:
    return tuple(
        Series(f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{RATE})))", f"{what} p{round(q * 100)}")
        for q in (0.5, 0.99)
    )


PANELS = (
    MetricPanel(
        "Scrape targets up",
        "Spanline processes Prometheus reaches (receivers and workers; `up` of the spanline jobs).",
        "stat",
        (Series('sum(up{job=~"spanline.*"})', "up"),),
        base="red",
        thresholds=(Step(1, "green"),),
        width=4,
        height=4,
    ),
    MetricPanel(
        "Alert evaluator healthy",
        "1 while the last evaluation of a metrics record succeeded; 0 after a failure (see the worker's log).",
        "stat",
        (Series("min(spanline_alert_evaluator_healthy)", "healthy"),),
        base="red",
        thresholds=(Step(1, "green"),),
        width=4,
        height=4,
    ),
    MetricPanel(
        "Since the last evaluated minute",
        "Wall clock minus the start of the last minute the evaluator closed (the minute itself, the "
        "window grace, a trace root's arrival and ingest make ~90 s normal for live traffic).",
        "stat",
        (Series("time() - max(spanline_alert_last_evaluated_minute_seconds > 0)", "age"),),
        unit="s",
        thresholds=(Step(600, "orange"), Step(1800, "red")),
        width=4,
        height=4,
    ),
    MetricPanel(
        "Consumer lag (total)",
        "Messages of the spans topic not yet stored, over every partition.",
        "stat",
        (Series("sum(spanline_worker_consumer_lag_messages)", "lag"),),
        thresholds=(Step(1000, "orange"), Step(10000, "red")),
        width=4,
        height=4,
    ),
    MetricPanel(
        "Dead letters in range",
        "Items the worker dead-lettered in the time range (invalid spans, undecodable messages).",
        "stat",
        (Series("sum(increase(spanline_worker_dead_letters_total[$__range]))", "dead letters"),),
        thresholds=(Step(1, "orange"),),
        width=4,
        height=4,
    ),
    MetricPanel(
        "Notifier circuits open",
        "Receivers (PagerDuty, Slack, webhook) whose circuit breaker is open or half-open.",
        "stat",
        (Series("sum(spanline_notifier_circuit_open)", "open"),),
        thresholds=(Step(1, "red"),),
        width=4,
        height=4,
    ),
    MetricPanel(
        "Receiver requests by outcome",
        "Span POSTs answered per second: accepted, partial (207 / partialSuccess), bad_request, "
        "unauthorized, forbidden, too_large, unavailable (Kafka), error.",
        "timeseries",
        (Series(rate("spanline_receiver_requests_total", "outcome"), "{{outcome}}"),),
        unit="reqps",
    ),
    MetricPanel(
        "Receiver items by outcome",
        "Spans per second in answered requests: accepted (queued on Kafka) or rejected (dead-lettered).",
        "timeseries",
        (Series(rate("spanline_receiver_items_total", "outcome"), "{{outcome}}"),),
        unit="ops",
    ),
    MetricPanel(
        "Receiver latency",
        "Time from a span POST's arrival to its answer, Kafka's acknowledgement included.",
        "timeseries",
        quantiles("spanline_receiver_request_duration_seconds", "request"),
        unit="s",
    ),
    MetricPanel(
        "Worker spans",
        "Spans per second consumed, stored in ClickHouse, dead-lettered and dropped as re-sends.",
        "timeseries",
        (
            Series("sum(rate(spanline_worker_spans_consumed_total[$__rate_interval]))", "consumed"),
            Series("sum(rate(spanline_worker_spans_stored_total[$__rate_interval]))", "stored"),
            Series("sum(rate(spanline_worker_dead_letters_total[$__rate_interval]))", "dead-lettered"),
            Series("sum(rate(spanline_worker_resends_dropped_total[$__rate_interval]))", "re-sends dropped"),
        ),
        unit="ops",
    ),
    MetricPanel(
        "Consumer lag per partition",
        "Messages of each spans partition not yet stored (the high watermark of the last fetch "
        "minus the next unstored offset; approximate on the embedded tansu broker).",
        "timeseries",
        (Series("sum by (partition) (spanline_worker_consumer_lag_messages)", "partition {{partition}}"),),
    ),
    MetricPanel(
        "Batch and insert latency",
        "One partition batch's checkpoint (process, ledger, insert, windows, dead letters) and one "
        "ClickHouse insert, retries included.",
        "timeseries",
        quantiles("spanline_worker_batch_duration_seconds", "batch")
        + quantiles("spanline_worker_insert_duration_seconds", "insert"),
        unit="s",
    ),
    MetricPanel(
        "Worker throughput",
        "Kafka messages taken, partition batches stored and minute windows emitted per second.",
        "timeseries",
        (
            Series("sum(rate(spanline_worker_messages_total[$__rate_interval]))", "messages"),
            Series("sum(rate(spanline_worker_batches_total[$__rate_interval]))", "batches"),
            Series("sum(rate(spanline_worker_windows_emitted_total[$__rate_interval]))", "windows"),
        ),
        unit="ops",
    ),
    MetricPanel(
        "Worker retries",
        "Retries per second: transient (ClickHouse or Kafka unavailable, backing off) and "
        "unexpected (a held batch: read the worker's log).",
        "timeseries",
        (Series(rate("spanline_worker_retries_total", "kind"), "{{kind}}"),),
        unit="ops",
    ),
    MetricPanel(
        "Alert evaluation",
        "Minutes evaluated, evaluation failures and alert state changes (by state) per minute.",
        "timeseries",
        (
            Series("sum(increase(spanline_alert_minutes_evaluated_total[$__rate_interval]))", "minutes evaluated"),
            Series("sum(increase(spanline_alert_evaluation_failures_total[$__rate_interval]))", "failures"),
            Series("sum by (state) (increase(spanline_alert_events_total[$__rate_interval]))", "{{state}}"),
        ),
    ),
    MetricPanel(
        "Notifications and notifier failures",
        "Per receiver: notifications delivered or dropped, and failed delivery attempts (retryable or not).",
        "timeseries",
        (
            Series(
                "sum by (receiver, outcome) (increase(spanline_notifications_total[$__rate_interval]))",
                "{{receiver}} {{outcome}}",
            ),
            Series(
                "sum by (receiver, retryable) (increase(spanline_notifier_failures_total[$__rate_interval]))",
                "{{receiver}} failed (retryable={{retryable}})",
            ),
        ),
    ),
)


def pipeline_json(panels: tuple[MetricPanel, ...] = PANELS) -> dict[str, Any]:
    """The dashboard's JSON model as Grafana stores it (schemaVersion of Grafana 11.6)."""
    datasource = (
        dash.DatasourceVariable("datasource")
        .label("Prometheus")
        .type("prometheus")
        .current(dashboard_models.VariableOption(text="Spanline Prometheus", value=DATASOURCE_UID))
    )
    builder = (
        dash.Dashboard(TITLE)
        .uid(UID)
        .description("The receiver's and the worker's own metrics, scraped by Prometheus from /metrics.")
        .tags(["spanline", "pipeline"])
        .timezone("utc")
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .with_variable(datasource)
    )
    x = y = row_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        if x + panel.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        builder = builder.with_panel(_panel(panel, panel_id, x, y))
        x, row_height = x + panel.width, max(row_height, panel.height)
    model: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder, sort_keys=True))
    return model


def _panel(panel: MetricPanel, panel_id: int, x: int, y: int) -> timeseries.Panel | stat.Panel:
    steps = [dashboard_models.Threshold(value=None, color=panel.base)]
    steps += [dashboard_models.Threshold(value=step.value, color=step.color) for step in panel.thresholds]
    built = (
        (timeseries.Panel() if panel.kind == "timeseries" else stat.Panel())
        .id(panel_id)
        .title(panel.title)
        .description(panel.description)
        .datasource(DATASOURCE)
        .grid_pos(dashboard_models.GridPos(h=panel.height, w=panel.width, x=x, y=y))
        .unit(panel.unit)
        .thresholds(dash.ThresholdsConfig().mode(dashboard_models.ThresholdsMode.ABSOLUTE).steps(steps))
    )
    for index, series in enumerate(panel.series):
        query = prometheus.Dataquery().ref_id(chr(ord("A") + index)).datasource(DATASOURCE).expr(series.expr)
        built = built.with_target(query.legend_format(series.legend).range())
    if isinstance(built, timeseries.Panel):
        return built.line_width(2).fill_opacity(10)
    return (
        built.color_mode(common_models.BigValueColorMode.VALUE)
        .graph_mode(common_models.BigValueGraphMode.AREA)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))  # the latest value, not a mean
    )
