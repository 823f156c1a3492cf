"""The five dashboards (docs/requirements.md §7): executive, on-call, engineering, cost analysis,
quality & retrieval. Every figure's definition follows the README's metric definitions and the
SQL library (sql/queries); tests/test_dashboard_queries.py checks them against each other.

Time series read the per-minute rollup (``spans_minute``) where its grain has the dimension;
breakdowns the rollup does not keep (cache layer, tier, routing reason, tool, eval name,
prompt version) read raw ``spans`` within the time range.
"""

from __future__ import annotations

from spanline.contracts import Contract
from spanline.dashboards.filters import LATENCY_SKETCH, SCOPE, SCOPE_MODEL, TENANT
from spanline.dashboards.model import Annotation, Dashboard, Panel, Step, TemplateVariable
from spanline.dashboards.thresholds import (
    CONTEXT_EXHAUSTION,
    ERROR_RATE_CRITICAL,
    ERROR_RATE_HIGH,
    RATE_LIMITED,
    TOOL_ERROR_RATE,
    budgets_sql,
    daily_budgets,
    global_target,
    rate_limits_sql,
    stage_budgets_sql,
    upper_limit,
)
from spanline.traces.links import TRACE_DASHBOARD_UID, TRACE_VARIABLE

DB = "${database}"
MINUTES = f"FROM {DB}.spans_minute WHERE $__timeFilter(minute)"
RAW = f"FROM {DB}.spans WHERE $__timeFilter(start_time)"
MODEL_CALL = "model_requested != ''"
ERROR_STEPS = (Step(ERROR_RATE_HIGH, "orange"), Step(ERROR_RATE_CRITICAL, "red"))

VARIABLES = (
    TemplateVariable("tenant", "Tenant", f"SELECT DISTINCT tenant_id FROM {DB}.spans_day ORDER BY tenant_id"),
    TemplateVariable("service", "Service", f"SELECT DISTINCT service FROM {DB}.spans_day ORDER BY service"),
    TemplateVariable("feature", "Feature", f"SELECT DISTINCT feature FROM {DB}.spans_day ORDER BY feature"),
    TemplateVariable(
        "model",
        "Model",
        f"SELECT DISTINCT model_requested FROM {DB}.spans_day WHERE {MODEL_CALL} ORDER BY model_requested",
    ),
)

ANNOTATIONS = (
    Annotation(
        "Alerts",
        f"""SELECT at AS time, concat(upper(severity), ' ', rule, ' ', state) AS title, summary AS text,
       [rule, severity, state] AS tags
FROM {DB}.alerts
WHERE $__timeFilter(at) AND {TENANT}
ORDER BY time""",
        "red",
    ),
    Annotation(
        "Model version changes",
        f"""SELECT first_seen AS time, concat(provider, ' ', model, ': ', previous_response, ' -> ', model_response) AS text,
       ['model-version', model] AS tags
FROM
(
    SELECT provider, model, model_response, first_seen,
           lagInFrame(model_response, 1, '') OVER (
               PARTITION BY provider, model ORDER BY first_seen, model_response
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS previous_response
    FROM
    (
        SELECT provider, model_requested AS model, model_response, min(start_time) AS first_seen
        {RAW} AND {TENANT} AND {MODEL_CALL} AND model_response != ''
        GROUP BY provider, model, model_response
    )
)
WHERE previous_response != ''
ORDER BY time""",
        "purple",
    ),
)


#: Per trace in the range: the figures `spanline traces` ranks by (sql/statements/traces_ranked.sql).
TRACE_FIGURES = f"""SELECT trace_id, tenant_id AS tenant, anyIf(feature, parent_span_id = '') AS root_feature,
       anyIf(name, parent_span_id = '') AS root, min(start_time) AS started,
       toFloat64(dateDiff('millisecond', min(start_time), max(end_time))) AS duration_ms,
       sum(cost_usd) AS cost_usd, count() AS spans, countIf(status = 'error') AS failed_spans,
       countIf(attempt > 0) AS retries
{RAW} AND {SCOPE}
GROUP BY tenant_id, trace_id"""
TRACE_ORDER = {
    "slowest": "ORDER BY duration_ms DESC, trace_id",
    "costliest": "ORDER BY cost_usd DESC, trace_id",
    "failed": "HAVING failed_spans > 0\nORDER BY countIf(status = 'error' AND parent_span_id = '') DESC, failed_spans DESC, "
    "duration_ms DESC, trace_id",
}
TRACE_ROWS = 20


def trace_table(rank: str) -> Panel:
    """The worst traces of the range by ``rank``; each trace id opens its waterfall (Spanline / Trace)."""
    return Panel(
        f"{rank.capitalize()} traces",
        f"The {TRACE_ROWS} {rank} traces started in the range (same ranking as `spanline traces --{rank}`); "
        "click a trace_id to open its waterfall, or run `spanline trace <trace_id>`.",
        "table",
        f"{TRACE_FIGURES}\n{TRACE_ORDER[rank]}\nLIMIT {TRACE_ROWS}",
        width=12,
        trace_links=True,
    )


#: One trace in the plugin's trace format (Format = Trace): the column aliases its Traces panel
#: reads (traceID, spanID, parentSpanID, serviceName, operationName, startTime, duration in ms,
#: tags and serviceTags as arrays of {key, value} maps, statusCode 2 = error). The lookup table
#: (sql/migrations/0007) bounds the start time, so only the trace's days are read; spans stored
#: before it have no lookup row and are searched over every day.
TRACE_SPANS = f"""WITH ${{{TRACE_VARIABLE}:singlequote}} AS wanted,
    (SELECT count() FROM {DB}.trace_index WHERE trace_id = wanted) AS located,
    (SELECT min(start_time) FROM {DB}.trace_index WHERE trace_id = wanted) AS first_start,
    (SELECT max(last_start) FROM {DB}.trace_index WHERE trace_id = wanted) AS last_start
SELECT trace_id AS traceID, span_id AS spanID, parent_span_id AS parentSpanID, service AS serviceName,
       concat(kind, ' ', name) AS operationName, start_time AS startTime, duration_ms AS duration,
       arrayConcat(
           arrayFilter(tag -> tag['value'] NOT IN ('', '0'), [
               map('key', 'kind', 'value', toString(kind)),
               map('key', 'model', 'value', toString(model_requested)),
               map('key', 'model_response', 'value', toString(model_response)),
               map('key', 'status', 'value', toString(status)),
               map('key', 'error_type', 'value', toString(error_type)),
               map('key', 'attempt', 'value', toString(attempt)),
               map('key', 'ttft_ms', 'value', ifNull(toString(ttft_ms), '')),
               map('key', 'input_tokens', 'value', toString(input_tokens)),
               map('key', 'cache_read_tokens', 'value', toString(cache_read_tokens)),
               map('key', 'output_tokens', 'value', toString(output_tokens)),
               map('key', 'reasoning_tokens', 'value', toString(reasoning_tokens)),
               map('key', 'cost_usd', 'value', toString(cost_usd)),
               map('key', 'cache', 'value', if(cache_layer = '', '',
                   concat(cache_layer, multiIf(cache_hit IS NULL, '', cache_hit, ' hit', ' miss')))),
               map('key', 'route', 'value', if(route = '' AND routing_reason = '', '',
                   concat(route, ' (', routing_reason, ')'))),
               map('key', 'prompt', 'value', if(prompt_version = '', '', concat(prompt_id, '@', prompt_version))),
               map('key', 'retrieval', 'value', if(index_name = '', '',
                   concat(index_name, ifNull(concat(' top-', toString(top_k)), '')))),
               map('key', 'tool', 'value', toString(tool_name)),
               map('key', 'eval', 'value', if(eval_score IS NULL, '', concat(eval_name, ' ', toString(eval_score))))
           ]),
           arrayMap(key -> map('key', key, 'value', attributes[key]), mapKeys(attributes))
       ) AS tags,
       [map('key', 'tenant', 'value', toString(tenant_id)), map('key', 'feature', 'value', toString(feature)),
        map('key', 'environment', 'value', toString(environment))] AS serviceTags,
       if(status = 'error', 2, 0) AS statusCode, toString(error_type) AS statusMessage
FROM {DB}.spans
WHERE trace_id = wanted
  AND (located = 0 OR (start_time >= first_start AND start_time <= last_start))
ORDER BY startTime
LIMIT 1000"""


def trace_dashboard() -> Dashboard:
    """One trace as Grafana's Traces panel draws it; the trace tables' links open it."""
    return Dashboard(
        TRACE_DASHBOARD_UID,
        "Spanline / Trace",
        "One request as a waterfall: type a trace id, or click one in a trace table (on-call, engineering) "
        "or an alert page. The same trace in a terminal: `spanline trace <trace_id>`.",
        (
            Panel(
                "Trace",
                "Every span of the trace by parent, one time bar per span; tags carry the model, tokens, "
                "cost, cache, route, prompt, retrieval, tool and eval figures.",
                "traces",
                TRACE_SPANS,
                width=24,
                height=22,
            ),
        ),
        variables=(TemplateVariable(TRACE_VARIABLE, "Trace id", "", textbox=True),),
        time_from="now-7d",
    )


def latency_series(column: str, kind_filter: str) -> str:
    """p50/p95/p99 per interval, merged from the minute sketches (µs -> ms)."""
    sketch = LATENCY_SKETCH.format(column=column)
    return f"""SELECT time, q[1] / 1000 AS p50_ms, q[2] / 1000 AS p95_ms, q[3] / 1000 AS p99_ms
FROM
(
    SELECT $__timeInterval(minute) AS time, {sketch} AS q
    {MINUTES} AND {SCOPE_MODEL} AND {kind_filter}
    GROUP BY time
)
ORDER BY time"""


def spend_by(column: str, title: str, description: str, extra: str = "") -> Panel:
    return Panel(
        title,
        description,
        "bargauge",
        f"""SELECT {column}, sum(cost_usd) AS spend_usd
{MINUTES} AND {SCOPE_MODEL}{extra}
GROUP BY {column}
ORDER BY spend_usd DESC, {column}
LIMIT 15""",
        unit="currencyUSD",
        width=8,
        decimals=2,
    )


def executive(contracts: list[Contract]) -> Dashboard:
    budgets = budgets_sql(daily_budgets(contracts))
    p95_target = global_target(contracts, "p95_latency_ms")
    return Dashboard(
        "spanline-executive",
        "Spanline / Executive",
        "Spend against budget, the cost trend and month-end forecast, traffic and overall health.",
        (
            Panel(
                "Spend in range",
                "Total cost_usd of every span in the time range (catalog prices at each span's "
                "start time; unpriced spans count as unpriced, not free).",
                "stat",
                f"SELECT sum(cost_usd) AS spend_usd {MINUTES} AND {SCOPE_MODEL}",
                unit="currencyUSD",
                width=6,
                height=5,
                decimals=2,
            ),
            Panel(
                "Budget used (prorated)",
                "Spend of the tenants that have a daily budget (spanline/contracts.yaml) "
                "divided by their budgets prorated to the range's length: 100% = spending exactly at budget.",
                "stat",
                f"""WITH
    budgets AS (SELECT * FROM {budgets}),
    (SELECT sum(cost_usd) {MINUTES} AND {SCOPE} AND tenant_id IN (SELECT tenant_id FROM budgets)) AS spend_usd,
    (SELECT sum(daily_budget_usd) FROM budgets WHERE {TENANT})
        * greatest(dateDiff('second', $__fromTime, $__toTime), 1) / 86400 AS budget_usd
SELECT spend_usd / nullIf(budget_usd, 0) AS budget_used""",
                unit="percentunit",
                width=6,
                height=5,
                thresholds=(Step(0.8, "orange"), Step(1.0, "red")),
            ),
            Panel(
                "Forecast to month end",
                "Month-to-date spend (hourly rollup, from the 1st of the month of the "
                "range's end) plus the range's daily run rate times the days left in that month.",
                "stat",
                f"""WITH
    (SELECT sum(cost_usd) FROM {DB}.spans_hour
     WHERE hour >= toStartOfMonth($__toTime, 'UTC') AND hour <= $__toTime AND {SCOPE_MODEL}) AS month_to_date,
    (SELECT sum(cost_usd) {MINUTES} AND {SCOPE_MODEL}) AS range_spend,
    greatest(dateDiff('second', $__fromTime, $__toTime), 1) / 86400 AS range_days,
    dateDiff('second', $__toTime, toDateTime(toStartOfMonth($__toTime, 'UTC') + INTERVAL 1 MONTH, 'UTC')) / 86400 AS days_left
SELECT month_to_date + range_spend / range_days * days_left AS forecast_usd""",
                unit="currencyUSD",
                width=6,
                height=5,
                decimals=2,
            ),
            Panel(
                "Failed requests",
                "Share of requests (root spans) whose status is error.",
                "stat",
                f"SELECT sumIf(errors, kind = 'request') / nullIf(sum(requests), 0) AS failed_share "
                f"{MINUTES} AND {SCOPE}",
                unit="percentunit",
                width=6,
                height=5,
                thresholds=ERROR_STEPS,
            ),
            Panel(
                "Cost trend",
                "Spend per interval (sum of cost_usd).",
                "timeseries",
                f"""SELECT $__timeInterval(minute) AS time, sum(cost_usd) AS spend_usd
{MINUTES} AND {SCOPE_MODEL}
GROUP BY time
ORDER BY time""",
                unit="currencyUSD",
            ),
            Panel(
                "Spend vs budget pace",
                "Cumulative spend of the tenants with a daily budget since the range's "
                "start, against the pace that spends their summed daily budgets (spanline/contracts.yaml) evenly "
                "over the day: above the pace line = on course to overspend.",
                "timeseries",
                f"""WITH
    budgets AS (SELECT * FROM {budgets}),
    (SELECT sum(daily_budget_usd) FROM budgets WHERE {TENANT}) AS daily_budget_usd
SELECT time,
       sum(spend_usd) OVER (ORDER BY time ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cumulative_spend_usd,
       daily_budget_usd * (dateDiff('second', $__fromTime, time) + $__interval_s) / 86400 AS budget_pace_usd
FROM
(
    SELECT $__timeInterval(minute) AS time, sum(cost_usd) AS spend_usd
    {MINUTES} AND {SCOPE} AND tenant_id IN (SELECT tenant_id FROM budgets)
    GROUP BY time
)
ORDER BY time""",
                unit="currencyUSD",
            ),
            Panel(
                "Requests",
                "Requests (root spans) per interval and how many of them failed.",
                "timeseries",
                f"""SELECT $__timeInterval(minute) AS time, sum(requests) AS requests,
       sumIf(errors, kind = 'request') AS failed_requests
{MINUTES} AND {SCOPE}
GROUP BY time
ORDER BY time""",
            ),
            Panel(
                "Health: model-call error rate",
                "Failed model calls (spans naming a model, retries included) "
                "over all model calls. Amber at the high alert (10%), red at the critical one (50%).",
                "stat",
                f"SELECT sumIf(errors, {MODEL_CALL}) / nullIf(sumIf(spans, {MODEL_CALL}), 0) AS error_rate "
                f"{MINUTES} AND {SCOPE_MODEL}",
                unit="percentunit",
                width=6,
                height=5,
                thresholds=ERROR_STEPS,
            ),
            Panel(
                "Health: p95 request latency",
                "95th percentile of request (root span) duration from the minute "
                "sketches; thresholds from the contract's p95_latency_ms.",
                "stat",
                f"SELECT {LATENCY_SKETCH.format(column='duration_us_sketch')}[2] / 1000 AS p95_ms "
                f"{MINUTES} AND {SCOPE} AND kind = 'request'",
                unit="ms",
                width=6,
                height=5,
                thresholds=upper_limit(p95_target),
            ),
            Panel(
                "Health: cache hit rate",
                "Cache hits over cache lookups, every layer.",
                "stat",
                f"SELECT sum(cache_hits) / nullIf(sum(cache_lookups), 0) AS hit_rate {MINUTES} AND {SCOPE}",
                unit="percentunit",
                width=6,
                height=5,
                base="red",
                thresholds=(Step(0.2, "orange"), Step(0.4, "green")),
            ),
            Panel(
                "Health: active alerts",
                "Alert incidents whose latest state at the range's end is firing.",
                "stat",
                f"""SELECT count() AS active_alerts
FROM
(
    SELECT dedup_key, argMax(state, (at, recorded_at)) AS state
    FROM {DB}.alerts
    WHERE at <= $__toTime AND {TENANT}
    GROUP BY dedup_key
)
WHERE state = 'firing'""",
                width=6,
                height=5,
                thresholds=(Step(1, "red"),),
            ),
        ),
    )


def on_call(contracts: list[Contract]) -> Dashboard:
    return Dashboard(
        "spanline-oncall",
        "Spanline / On-call",
        "What broke and since when: error and 429 rates, latency and TTFT percentiles, active alerts, "
        "pipeline lag, failing providers.",
        (
            Panel(
                "Error and 429 rates",
                "Per interval, failed model calls and rate-limited calls (HTTP 429 or "
                "error_type rate_limited) over all model calls. Lines at the 429 alert (2%) and the high error "
                "alert (10%).",
                "timeseries",
                f"""SELECT $__timeInterval(minute) AS time,
       sumIf(errors, {MODEL_CALL}) / nullIf(sumIf(spans, {MODEL_CALL}), 0) AS error_rate,
       sumIf(rate_limited, {MODEL_CALL}) / nullIf(sumIf(spans, {MODEL_CALL}), 0) AS rate_limited_rate
{MINUTES} AND {SCOPE_MODEL}
GROUP BY time
ORDER BY time""",
                unit="percentunit",
                thresholds=(Step(RATE_LIMITED, "orange"), Step(ERROR_RATE_HIGH, "red")),
            ),
            Panel(
                "Errors by type",
                "Failed spans per interval by error_type.",
                "timeseries",
                f"""SELECT $__timeInterval(minute) AS time, error_type, sum(n) AS errors
FROM {DB}.spans_minute
ARRAY JOIN mapKeys(errors_by_type) AS error_type, mapValues(errors_by_type) AS n
WHERE $__timeFilter(minute) AND {SCOPE_MODEL}
GROUP BY time, error_type
ORDER BY time, error_type""",
                stacked=True,
            ),
            Panel(
                "LLM call latency p50 / p95 / p99",
                "Duration percentiles of LLM calls from the minute sketches "
                "(DDSketch, 1% relative accuracy). Red line: the contract's p95_latency_ms.",
                "timeseries",
                latency_series("duration_us_sketch", "kind = 'llm'"),
                unit="ms",
                thresholds=upper_limit(global_target(contracts, "p95_latency_ms")),
            ),
            Panel(
                "Time to first token p50 / p95 / p99",
                "TTFT percentiles of streamed LLM calls. Red line: the contract's p95_ttft_ms.",
                "timeseries",
                latency_series("ttft_us_sketch", "kind = 'llm'"),
                unit="ms",
                thresholds=upper_limit(global_target(contracts, "p95_ttft_ms")),
            ),
            Panel(
                "Rate-limit utilisation",
                "Per tenant key and model, the busiest minute of each interval as a share of the provider's limit "
                "(spanline/contracts.yaml rate_limits): the larger of tokens per minute (input + output) over "
                "tokens_per_minute and LLM requests per minute (retries included) over requests_per_minute. "
                "Amber at the headroom warning (80%), red at the limit (429s).",
                "timeseries",
                f"""SELECT time, key, max(utilisation) AS utilisation
FROM
(
    SELECT $__timeInterval(minute) AS time, concat(tenant_id, ' ', provider, '/', model_requested) AS key,
           greatest(if(tpm > 0, tokens / tpm, 0), if(rpm > 0, calls / rpm, 0)) AS utilisation
    FROM
    (
        SELECT minute, tenant_id, provider, model_requested, sum(input_tokens + output_tokens) AS tokens,
               sum(llm_calls) AS calls
        {MINUTES} AND {SCOPE_MODEL} AND kind = 'llm'
        GROUP BY minute, tenant_id, provider, model_requested
    ) AS used
    CROSS JOIN {rate_limits_sql(contracts)} AS limits
    WHERE limits.b_provider = used.provider AND limits.b_model = used.model_requested
      AND limits.b_tenant IN ('*', used.tenant_id)
    ORDER BY limits.specificity DESC
    LIMIT 1 BY minute, tenant_id, provider, model_requested
)
GROUP BY time, key
ORDER BY time, key""",
                unit="percentunit",
                thresholds=upper_limit(1.0),
            ),
            Panel(
                "Active alerts",
                "Incidents whose latest state at the range's end is firing, most severe first, "
                "with the runbook branch the diagnosis points to and the worst of the incident's example "
                "traces (click to open its waterfall; the page lists up to 3).",
                "table",
                f"""SELECT rule, severity, tenant, since, value, threshold, summary, runbook, runbook_branch,
       example_trace_ids[1] AS trace_id
FROM
(
    SELECT dedup_key, argMax(state, (at, recorded_at)) AS state, argMax(rule, (at, recorded_at)) AS rule,
           argMax(severity, (at, recorded_at)) AS severity, any(tenant_id) AS tenant,
           max(at) AS since, argMax(value, (at, recorded_at)) AS value,
           argMax(threshold, (at, recorded_at)) AS threshold, argMax(summary, (at, recorded_at)) AS summary,
           argMax(runbook, (at, recorded_at)) AS runbook, argMax(runbook_branch, (at, recorded_at)) AS runbook_branch,
           argMax(example_trace_ids, (at, recorded_at)) AS example_trace_ids
    FROM {DB}.alerts
    WHERE at <= $__toTime AND {TENANT}
    GROUP BY dedup_key
)
WHERE state = 'firing'
ORDER BY indexOf(['critical', 'high', 'medium', 'low'], severity), since DESC""",
                width=24,
                trace_links=True,
            ),
            Panel(
                "Pipeline lag: span end to stored",
                "Seconds from a span's end to the worker storing it (p50, p95, "
                "max per interval): rising values mean workers fall behind Kafka (consumer lag).",
                "timeseries",
                f"""SELECT $__timeInterval(start_time) AS time,
       quantile(0.5)(lag_ms) AS p50_ms, quantile(0.95)(lag_ms) AS p95_ms, max(lag_ms) AS max_ms
FROM
(
    SELECT start_time, toFloat64(dateDiff('millisecond', end_time, ingested_at)) AS lag_ms
    {RAW} AND {SCOPE}
)
GROUP BY time
ORDER BY time""",
                unit="ms",
            ),
            Panel(
                "Failing providers and endpoints",
                "Model calls per provider and endpoint: error and 429 rates "
                "over all calls (retries included), timeouts and server errors.",
                "table",
                f"""SELECT provider, endpoint, count() AS calls, countIf(status = 'error') AS errors,
       errors / calls AS error_rate, countIf(http_status = 429 OR error_type = 'rate_limited') AS rate_limited,
       rate_limited / calls AS rate_limited_rate, countIf(error_type = 'timeout') AS timeouts,
       countIf(error_type = 'server_error') AS server_errors
{RAW} AND {SCOPE_MODEL} AND {MODEL_CALL}
GROUP BY provider, endpoint
ORDER BY error_rate DESC, provider, endpoint""",
            ),
            trace_table("slowest"),
            trace_table("failed"),
        ),
    )


def engineering(contracts: list[Contract]) -> Dashboard:
    return Dashboard(
        "spanline-engineering",
        "Spanline / Engineering",
        "Where time and tokens go: per-stage latency, tokens, cache hit rate per layer, routing mix, retry "
        "amplification, tool errors, agent steps.",
        (
            Panel(
                "Latency by stage",
                "Exact p50/p95/p99 (quantileExactInclusive) of duration per span kind and "
                "model; TTFT for streamed calls. Same definition as `spanline sql run latency_by_stage`.",
                "table",
                f"""SELECT kind, model_requested AS model, count() AS spans,
       quantileExactInclusive(0.5)(duration_ms) AS p50_ms, quantileExactInclusive(0.95)(duration_ms) AS p95_ms,
       quantileExactInclusive(0.99)(duration_ms) AS p99_ms,
       if(count(ttft_ms) > 0, quantileExactInclusive(0.95)(ttft_ms), NULL) AS ttft_p95_ms
{RAW} AND {SCOPE_MODEL}
GROUP BY kind, model
ORDER BY kind, model""",
                width=24,
            ),
            Panel(
                "p95 duration by stage",
                "p95 duration per span kind and interval, from the minute sketches.",
                "timeseries",
                f"""SELECT time, kind, q[2] / 1000 AS p95_ms
FROM
(
    SELECT $__timeInterval(minute) AS time, kind, {LATENCY_SKETCH.format(column="duration_us_sketch")} AS q
    {MINUTES} AND {SCOPE_MODEL}
    GROUP BY time, kind
)
ORDER BY time, kind""",
                unit="ms",
            ),
            Panel(
                "Stage p95 vs budget",
                "Per tenant, feature and stage (span kind), the p95 duration over the range from the minute "
                "sketches against the stage's budget (spanline/contracts.yaml stage_p95_ms, the most specific "
                "entry) and the share of the budget it uses; the stage_budget alert pages above 100%.",
                "table",
                f"""SELECT tenant_id, feature, kind, any(p95_ms) AS p95_ms, argMax(budget_ms, specificity) AS budget_ms,
       p95_ms / budget_ms AS share_of_budget
FROM
(
    SELECT tenant_id, feature, kind, {LATENCY_SKETCH.format(column="duration_us_sketch")}[2] / 1000 AS p95_ms
    {MINUTES} AND {SCOPE}
    GROUP BY tenant_id, feature, kind
) AS actual
CROSS JOIN {stage_budgets_sql(contracts)} AS budgets
WHERE budgets.b_kind = actual.kind AND budgets.b_tenant IN ('*', actual.tenant_id)
  AND budgets.b_feature IN ('*', actual.feature)
GROUP BY tenant_id, feature, kind
ORDER BY share_of_budget DESC, tenant_id, feature, kind""",
                unit="ms",
                width=24,
                decimals=2,
            ),
            Panel(
                "Tokens",
                "Input, output, cache-read and reasoning tokens per interval. Cache reads are part of "
                "input and reasoning part of output (OTel GenAI), never extra.",
                "timeseries",
                f"""SELECT $__timeInterval(minute) AS time, sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens, sum(cache_read_tokens) AS cache_read_tokens,
       sum(reasoning_tokens) AS reasoning_tokens
{MINUTES} AND {SCOPE_MODEL}
GROUP BY time
ORDER BY time""",
            ),
            Panel(
                "Cache hit rate by layer",
                "Hits over lookups per cache layer (cache spans with a known outcome).",
                "bargauge",
                f"""SELECT cache_layer, sum(cache_hits_by_layer[cache_layer]) / sum(lookups) AS hit_rate
FROM {DB}.spans_minute
ARRAY JOIN mapKeys(cache_lookups_by_layer) AS cache_layer, mapValues(cache_lookups_by_layer) AS lookups
WHERE $__timeFilter(minute) AND {SCOPE}
GROUP BY cache_layer
ORDER BY cache_layer""",
                unit="percentunit",
                width=8,
                base="red",
                thresholds=(Step(0.2, "orange"), Step(0.4, "green")),
            ),
            Panel(
                "Routing mix",
                "Share of LLM calls per model tier and routing reason in each interval "
                "(escalations, fallbacks and canaries show up as reasons).",
                "timeseries",
                f"""SELECT $__timeInterval(start_time) AS time, concat(model_tier, ' / ', routing_reason) AS route_class,
       count() / sum(count()) OVER (PARTITION BY time) AS share_of_calls
{RAW} AND {SCOPE_MODEL} AND kind = 'llm'
GROUP BY time, route_class
ORDER BY time, route_class""",
                unit="percentunit",
                stacked=True,
                width=16,
            ),
            Panel(
                "Retry amplification",
                "Model calls per first attempt (attempt = 0): 1.0 = no retries, 1.25 = "
                "every 4 logical calls cost a fifth.",
                "timeseries",
                f"""SELECT $__timeInterval(minute) AS time,
       sumIf(spans, {MODEL_CALL}) / nullIf(sumIf(spans, {MODEL_CALL}) - sumIf(retries, {MODEL_CALL}), 0)
           AS retry_amplification
{MINUTES} AND {SCOPE_MODEL}
GROUP BY time
ORDER BY time""",
                decimals=3,
                thresholds=(Step(1.1, "orange"), Step(1.5, "red")),
            ),
            Panel(
                "Tool calls and errors",
                "Calls, failures and error rate per tool; red above the tool-storm alert's 5%.",
                "table",
                f"""SELECT tool_name, count() AS calls, countIf(status = 'error') AS errors, errors / calls AS error_rate,
       quantileExactInclusive(0.95)(duration_ms) AS p95_ms
{RAW} AND {SCOPE} AND kind = 'tool'
GROUP BY tool_name
ORDER BY errors DESC, tool_name""",
                thresholds=(Step(TOOL_ERROR_RATE, "red"),),
            ),
            Panel(
                "Agent steps per trace",
                "agent_step spans per trace that has any, per interval: rising values "
                "with tool errors are a tool-call storm.",
                "timeseries",
                f"""SELECT $__timeInterval(start_time) AS time, count() / uniqExact(trace_id) AS steps_per_trace
{RAW} AND {SCOPE} AND kind = 'agent_step'
GROUP BY time
ORDER BY time""",
                decimals=2,
            ),
            trace_table("slowest"),
            trace_table("costliest"),
        ),
    )


def cost_analysis(contracts: list[Contract]) -> Dashboard:
    max_cost = global_target(contracts, "max_cost_per_request_usd")
    return Dashboard(
        "spanline-cost",
        "Spanline / Cost analysis",
        "Who and what spends: tenants, features, models, prompt versions; the costly tail; what caching and "
        "routing saved; cost per successful task.",
        (
            spend_by("tenant_id", "Spend by tenant", "cost_usd per tenant in the range."),
            spend_by("feature", "Spend by feature", "cost_usd per feature in the range."),
            spend_by(
                "model_requested",
                "Spend by model",
                "cost_usd per requested model (model calls only).",
                extra=f" AND {MODEL_CALL}",
            ),
            Panel(
                "Spend by model over time",
                "cost_usd per interval and requested model.",
                "timeseries",
                f"""SELECT $__timeInterval(minute) AS time, model_requested AS model, sum(cost_usd) AS spend_usd
{MINUTES} AND {SCOPE_MODEL} AND {MODEL_CALL}
GROUP BY time, model
ORDER BY time, model""",
                unit="currencyUSD",
                stacked=True,
                width=16,
            ),
            Panel(
                "Top 10% of calls: share of spend",
                "Model calls ranked by cost: what share of all spend the most expensive 10% make (Pareto).",
                "stat",
                f"""WITH ranked AS
(
    SELECT cost_usd, row_number() OVER (ORDER BY cost_usd DESC, span_id) AS cost_rank,
           count() OVER () AS all_calls, sum(cost_usd) OVER () AS all_cost_usd
    {RAW} AND {SCOPE_MODEL} AND {MODEL_CALL}
)
SELECT sumIf(cost_usd, cost_rank <= ceil(0.1 * all_calls)) / nullIf(any(all_cost_usd), 0) AS top_10pct_share
FROM ranked""",
                unit="percentunit",
                width=8,
                thresholds=(Step(0.5, "orange"), Step(0.7, "red")),
            ),
            Panel(
                "Pareto: features and prompts of the top 10% of calls",
                "The most expensive 10% of model calls "
                "grouped by feature and prompt version, with their share of all spend.",
                "table",
                f"""WITH ranked AS
(
    SELECT feature, prompt_id, prompt_version, cost_usd,
           row_number() OVER (ORDER BY cost_usd DESC, span_id) AS cost_rank,
           count() OVER () AS all_calls, sum(cost_usd) OVER () AS all_cost_usd
    {RAW} AND {SCOPE_MODEL} AND {MODEL_CALL}
)
SELECT feature, prompt_id, prompt_version, count() AS calls, sum(cost_usd) AS spend_usd,
       sum(cost_usd) / any(all_cost_usd) AS share_of_spend
FROM ranked
WHERE cost_rank <= ceil(0.1 * all_calls)
GROUP BY feature, prompt_id, prompt_version
ORDER BY spend_usd DESC, feature, prompt_id, prompt_version
LIMIT 20""",
                width=16,
            ),
            Panel(
                "Spend by prompt version",
                "LLM calls, spend and cost per call per prompt id and version.",
                "table",
                f"""SELECT prompt_id, prompt_version, count() AS llm_calls, sum(cost_usd) AS spend_usd,
       spend_usd / llm_calls AS cost_per_call_usd
{RAW} AND {SCOPE_MODEL} AND kind = 'llm' AND prompt_id != ''
GROUP BY prompt_id, prompt_version
ORDER BY prompt_id, prompt_version""",
            ),
            Panel(
                "Cache savings",
                "Per feature and layer: lookups, hits and what the hits saved, a hit priced as "
                "the mean cost of the feature's successful LLM calls in the range.",
                "table",
                f"""WITH
    lookups AS
    (
        SELECT feature, cache_layer, count() AS lookups, countIf(cache_hit) AS hits
        {RAW} AND {SCOPE} AND kind = 'cache' AND cache_hit IS NOT NULL
        GROUP BY feature, cache_layer
    ),
    avoided AS
    (
        SELECT feature, avg(cost_usd) AS mean_call_cost_usd
        {RAW} AND {SCOPE} AND kind = 'llm' AND status = 'ok'
        GROUP BY feature
    )
SELECT l.feature AS feature, l.cache_layer AS cache_layer, l.lookups AS lookups, l.hits AS hits,
       l.hits / l.lookups AS hit_rate, l.hits * a.mean_call_cost_usd AS saved_usd
FROM lookups AS l
LEFT JOIN avoided AS a ON l.feature = a.feature
ORDER BY saved_usd DESC, feature, cache_layer
SETTINGS join_use_nulls = 0""",
            ),
            Panel(
                "Routing savings",
                "Per feature: successful LLM calls served below the large tier, and what they "
                "saved against the feature's mean large-tier call cost.",
                "table",
                f"""SELECT feature, countIf(model_tier != 'large') AS cheaper_calls,
       avgIf(cost_usd, model_tier != 'large') AS cheaper_call_usd, avgIf(cost_usd, model_tier = 'large') AS large_call_usd,
       cheaper_calls * (large_call_usd - cheaper_call_usd) AS saved_usd
{RAW} AND {SCOPE_MODEL} AND kind = 'llm' AND status = 'ok' AND model_tier != ''
GROUP BY feature
HAVING cheaper_calls > 0 AND countIf(model_tier = 'large') > 0
ORDER BY saved_usd DESC, feature""",
            ),
            Panel(
                "Cost per successful task",
                "Per feature: tasks (root spans), success rate, cost of the successful "
                "traces per success, and the all-in figure charging failed traces to the successes. Red above the "
                "contract's max_cost_per_request_usd.",
                "table",
                f"""WITH
    roots AS
    (
        SELECT tenant_id, trace_id, feature, status = 'ok' AS succeeded
        {RAW} AND {SCOPE} AND kind = 'request' AND parent_span_id = ''
    ),
    trace_costs AS
    (
        SELECT tenant_id, trace_id, sum(cost_usd) AS trace_cost_usd
        FROM {DB}.spans
        WHERE start_time >= $__fromTime AND {TENANT} AND trace_id IN (SELECT trace_id FROM roots)
        GROUP BY tenant_id, trace_id
    )
SELECT r.feature AS feature, count() AS tasks, countIf(r.succeeded) AS successful_tasks,
       successful_tasks / tasks AS success_rate,
       if(successful_tasks > 0, sumIf(c.trace_cost_usd, r.succeeded) / successful_tasks, NULL) AS cost_per_successful_task,
       if(successful_tasks > 0, sum(c.trace_cost_usd) / successful_tasks, NULL) AS all_in_cost_per_success
FROM roots AS r
LEFT JOIN trace_costs AS c ON r.tenant_id = c.tenant_id AND r.trace_id = c.trace_id
GROUP BY feature
ORDER BY feature
SETTINGS join_use_nulls = 0""",
                thresholds=upper_limit(max_cost),
                width=24,
            ),
        ),
    )


def quality(contracts: list[Contract]) -> Dashboard:
    recall = global_target(contracts, "expected_recall_at_k")
    return Dashboard(
        "spanline-quality",
        "Spanline / Quality & retrieval",
        "Answer quality and retrieval health: eval pass rates, hallucination and refusal rates, recall@k "
        "canaries, embedding versions, silent model version changes, context exhaustion.",
        (
            Panel(
                "Eval pass rate",
                "Passed over run online evals per eval name and interval (retrieval canaries excluded: see recall@k).",
                "timeseries",
                f"""SELECT $__timeInterval(start_time) AS time, eval_name, countIf(eval_passed) / count() AS pass_rate
{RAW} AND {SCOPE} AND kind = 'eval' AND eval_passed IS NOT NULL AND eval_name NOT LIKE 'recall@%'
GROUP BY time, eval_name
ORDER BY time, eval_name""",
                unit="percentunit",
            ),
            Panel(
                "Hallucination and refusal rates",
                "Hallucination: failed faithfulness/hallucination/groundedness "
                "evals over those evals. Refusal: LLM calls with error_type refusal over LLM calls.",
                "timeseries",
                f"""SELECT $__timeInterval(minute) AS time,
       sum(hallucinations) / nullIf(sum(hallucination_evals), 0) AS hallucination_rate,
       sum(refusals) / nullIf(sum(llm_calls), 0) AS refusal_rate
{MINUTES} AND {SCOPE}
GROUP BY time
ORDER BY time""",
                unit="percentunit",
            ),
            Panel(
                "Recall@k on retrieval canaries",
                "Mean recall@k of the synthetic canary queries (eval spans named "
                "recall@k) per interval; red below the contract's expected_recall_at_k.",
                "timeseries",
                f"""SELECT $__timeInterval(minute) AS time, sum(recall_sum) / nullIf(sum(recall_evals), 0) AS recall
{MINUTES} AND {SCOPE}
GROUP BY time
HAVING sum(recall_evals) > 0
ORDER BY time""",
                unit="percentunit",
                base="red",
                thresholds=() if recall is None else (Step(recall, "green"),),
            ),
            Panel(
                "Containment and user feedback",
                "Per feature and interval: containment = requests completed without a human escalation "
                "(escalation spans in the trace) over requests, and the positive share of end-user feedback "
                "(feedback spans, eval_passed); the containment_drop and feedback_drop alerts page on drops.",
                "timeseries",
                f"""SELECT $__timeInterval(start_time) AS time, feature,
       1 - countIf(kind = 'escalation') / nullIf(countIf(kind = 'request'), 0) AS containment,
       countIf(kind = 'feedback' AND eval_passed) / nullIf(countIf(kind = 'feedback'), 0) AS positive_feedback
{RAW} AND {SCOPE} AND kind IN ('request', 'escalation', 'feedback')
GROUP BY time, feature
HAVING countIf(kind = 'request') > 0
ORDER BY time, feature""",
                unit="percentunit",
            ),
            Panel(
                "Index size per build",
                "Documents and chunks each retrieval index reported at its builds and refreshes (index_build "
                "spans), per index and interval, beside the recall canaries: a build that lost part of the corpus "
                "shows as a step down here before recall moves (the index_shrink alerts page at -20%).",
                "timeseries",
                f"""SELECT $__timeInterval(start_time) AS time, index_name, avg(index_documents) AS documents,
       avg(index_chunks) AS chunks
{RAW} AND {SCOPE} AND kind = 'index_build' AND index_documents IS NOT NULL
GROUP BY time, index_name
ORDER BY time, index_name""",
                unit="short",
            ),
            Panel(
                "Context exhaustion",
                "Context-length errors and truncations over model calls; the alert fires above 0.1%.",
                "stat",
                f"SELECT (sum(context_length_errors) + sum(context_truncations)) / nullIf(sumIf(spans, {MODEL_CALL}), 0) "
                f"AS exhaustion_rate {MINUTES} AND {SCOPE_MODEL}",
                unit="percentunit",
                width=6,
                thresholds=(Step(CONTEXT_EXHAUSTION, "red"),),
                decimals=3,
            ),
            Panel(
                "Embedding versions",
                "Query embedding model against the index's embedding model per index; "
                "mismatched rows mean queries and index live in different vector spaces.",
                "table",
                f"""SELECT index_name, embedding_model, index_embedding_model,
       embedding_model != index_embedding_model AS mismatched, count() AS spans,
       min(start_time) AS first_seen, max(start_time) AS last_seen
{RAW} AND {SCOPE} AND embedding_model != '' AND index_embedding_model != ''
GROUP BY index_name, embedding_model, index_embedding_model
ORDER BY mismatched DESC, index_name, embedding_model""",
                width=18,
            ),
            Panel(
                "Model versions seen",
                "Each versioned model a provider answered per requested model, first and "
                "last seen; previous_response != '' marks a silent version change.",
                "table",
                f"""SELECT provider, model, model_response, first_seen, last_seen, calls,
       lagInFrame(model_response, 1, '') OVER (
           PARTITION BY provider, model ORDER BY first_seen, model_response
           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS previous_response
FROM
(
    SELECT provider, model_requested AS model, model_response, min(start_time) AS first_seen,
           max(start_time) AS last_seen, count() AS calls
    {RAW} AND {SCOPE_MODEL} AND {MODEL_CALL} AND model_response != ''
    GROUP BY provider, model, model_response
)
ORDER BY provider, model, first_seen, model_response""",
                width=24,
            ),
        ),
    )


def build_dashboards(contracts: list[Contract]) -> list[Dashboard]:
    """Every dashboard, with the shared variables and annotations, thresholds from ``contracts``."""
    built = [
        executive(contracts),
        on_call(contracts),
        engineering(contracts),
        cost_analysis(contracts),
        quality(contracts),
    ]
    return [
        Dashboard(d.uid, d.title, d.description, d.panels, d.tags, VARIABLES, ANNOTATIONS, d.time_from) for d in built
    ]


def grafana_dashboards(contracts: list[Contract]) -> list[Dashboard]:
    """What Grafana gets: the five dashboards and the trace dashboard their trace tables open."""
    return [*build_dashboards(contracts), trace_dashboard()]
