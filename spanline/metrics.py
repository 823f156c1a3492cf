"""Spanline's own Prometheus metrics: every one defined here, once, in one registry.

Stages record into these objects (per request or per batch, never per span) and the two
processes serve the registry at ``/metrics``: the receiver on its port, the worker on its Faust
web port (spanline/worker.py). Each process exposes the groups it runs (:func:`expose`), so a
receiver's page carries no idle worker series; in the embedded mode one process runs both and
both pages show both groups.

Labels are bounded by the code or by configuration, never by traffic: outcome and endpoint
names, the ``spans`` topic's partitions, alert rule names (alerts/rules.yaml), receiver names
(pagerduty, slack, webhook, log). No tenant, trace, key or model label: those are unbounded
by design and answered per tenant by ClickHouse and the dashboards.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

#: No ``*_created`` series: one more series per counter and histogram child that no dashboard
#: reads (``process_start_time_seconds`` says when the process started).
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
#: Spanline's registry, not prometheus_client's global one: a page shows what :func:`expose` put
#: there and the process collectors, and a host process's own default registry stays its own.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

#: Seconds: from a fast local call to a batch held up by ClickHouse back-off.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# --- receiver (collectors/receiver)
RECEIVER_REQUESTS = Counter(
    "spanline_receiver_requests",
    "Span POSTs answered, by endpoint (spans, traces) and outcome: accepted, partial (some items "
    "rejected), bad_request, unauthorized, forbidden, too_large, unsupported_encoding, unavailable (Kafka), error.",
    ["endpoint", "outcome"],
)
RECEIVER_ITEMS = Counter(
    "spanline_receiver_items",
    "Spans in accepted requests, by endpoint and outcome: accepted (queued on Kafka) or rejected "
    "(dead-lettered with their reason).",
    ["endpoint", "outcome"],
)
RECEIVER_REQUEST_SECONDS = Histogram(
    "spanline_receiver_request_duration_seconds",
    "Time from a span POST's arrival to its answer (Kafka's acknowledgement included), by endpoint.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)

# --- worker (streams)
WORKER_MESSAGES = Counter("spanline_worker_messages", "Kafka messages of the spans topic taken by the ingest pipeline.")
WORKER_SPANS_CONSUMED = Counter(
    "spanline_worker_spans_consumed",
    "Spans decoded from checkpointed batches: each is stored, dead-lettered or dropped as a re-send.",
)
WORKER_SPANS_STORED = Counter("spanline_worker_spans_stored", "Spans inserted into ClickHouse (once each).")
WORKER_DEAD_LETTERS = Counter(
    "spanline_worker_dead_letters",
    "Dead letters sent by the worker: invalid spans, undecodable messages, rows isolated after a step failed on them.",
)
WORKER_RESENDS_DROPPED = Counter(
    "spanline_worker_resends_dropped",
    "Re-sent spans dropped before pricing (same tenant, trace and span id already stored).",
)
WORKER_BATCHES = Counter("spanline_worker_batches", "Partition batches checkpointed (stored and acked).")
WORKER_BATCH_SECONDS = Histogram(
    "spanline_worker_batch_duration_seconds",
    "Time to checkpoint one partition batch: process, ledger, insert, windows, dead letters (retries included).",
    buckets=LATENCY_BUCKETS,
)
WORKER_INSERT_SECONDS = Histogram(
    "spanline_worker_insert_duration_seconds",
    "Time of one ClickHouse insert of a batch's rows (back-off and isolation included).",
    buckets=LATENCY_BUCKETS,
)
WORKER_RETRIES = Counter(
    "spanline_worker_retries",
    "Retries of a worker step, by kind: transient (ClickHouse or Kafka unavailable) or unexpected "
    "(a held batch, see the worker's log).",
    ["kind"],
)
WORKER_CONSUMER_LAG = Gauge(
    "spanline_worker_consumer_lag_messages",
    "Messages of an assigned partition not yet stored: the high watermark of the last fetch minus "
    "the next offset the pipeline has not stored (on tansu the high watermark is approximate).",
    ["topic", "partition"],
)
WORKER_RESEND_KEY_BYTES = Gauge(
    "spanline_worker_resend_key_bytes",
    "Memory held for re-send detection: 16 bytes per span stored within SPANLINE_DEDUP_WINDOW_S of "
    "message time, over the worker's partitions (grows for that window after a start, then levels).",
)
WORKER_WINDOWS_EMITTED = Counter("spanline_worker_windows_emitted", "Closed minute windows sent to the metrics topic.")

# --- alerting (alerts)
ALERT_MINUTES_EVALUATED = Counter("spanline_alert_minutes_evaluated", "Merged minutes the alert evaluator evaluated.")
ALERT_EVALUATION_FAILURES = Counter(
    "spanline_alert_evaluation_failures",
    "metrics records whose evaluation failed (logged; alerting goes on with the next minute).",
)
ALERT_EVALUATOR_HEALTHY = Gauge(
    "spanline_alert_evaluator_healthy",
    "1 while the last evaluation succeeded (or none failed yet), 0 after a failed one.",
)
ALERT_EVALUATOR_HEALTHY.set(1)
ALERT_LAST_MINUTE = Gauge(
    "spanline_alert_last_evaluated_minute_seconds",
    "Start of the last minute evaluated, Unix seconds (0 = none yet; only the worker holding "
    "the metrics partition evaluates).",
)
ALERT_EVENTS = Counter(
    "spanline_alert_events",
    "Alert state changes, by rule and state (firing, resolved).",
    ["rule", "state"],
)
NOTIFICATIONS = Counter(
    "spanline_notifications",
    "Notifications finished per receiver, by outcome: delivered, or dropped (refused for good, "
    "receiver crash, queue overflow).",
    ["receiver", "outcome"],
)
NOTIFIER_FAILURES = Counter(
    "spanline_notifier_failures",
    "Failed delivery attempts per receiver; retryable (network, 429, 5xx: retried) or not (other 4xx).",
    ["receiver", "retryable"],
)
NOTIFIER_CIRCUIT_OPEN = Gauge(
    "spanline_notifier_circuit_open",
    "1 while a receiver's circuit breaker is open or half-open, else 0.",
    ["receiver"],
)

RECEIVER_METRICS: tuple[Collector, ...] = (RECEIVER_REQUESTS, RECEIVER_ITEMS, RECEIVER_REQUEST_SECONDS)
WORKER_METRICS: tuple[Collector, ...] = (
    WORKER_MESSAGES,
    WORKER_SPANS_CONSUMED,
    WORKER_SPANS_STORED,
    WORKER_DEAD_LETTERS,
    WORKER_RESENDS_DROPPED,
    WORKER_BATCHES,
    WORKER_BATCH_SECONDS,
    WORKER_INSERT_SECONDS,
    WORKER_RETRIES,
    WORKER_CONSUMER_LAG,
    WORKER_WINDOWS_EMITTED,
)
ALERTING_METRICS: tuple[Collector, ...] = (
    ALERT_MINUTES_EVALUATED,
    ALERT_EVALUATION_FAILURES,
    ALERT_EVALUATOR_HEALTHY,
    ALERT_LAST_MINUTE,
    ALERT_EVENTS,
    NOTIFICATIONS,
    NOTIFIER_FAILURES,
    NOTIFIER_CIRCUIT_OPEN,
)
_exposed: set[int] = set()


def expose(*metrics: Collector) -> None:
    """Put ``metrics`` on this process's ``/metrics`` page (each once, whoever asks first)."""
    for metric in metrics:
        if id(metric) not in _exposed:
            REGISTRY.register(metric)
            _exposed.add(id(metric))
