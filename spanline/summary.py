"""The demo's closing summary: spend, latency and cache figures straight from ClickHouse."""

from __future__ import annotations

from rich.console import Console

from spanline.analysis import formatted
from spanline.sql.queries import run_query
from spanline.settings import Settings

SUMMARY_QUERIES: dict[str, str] = {
    "Spend by model": """
        SELECT provider, model_requested AS model, count() AS calls,
               sum(input_tokens) AS input_tok, sum(output_tokens) AS output_tok,
               round(sum(cost_usd), 4) AS spend_usd, countIf(NOT cost_known) AS unpriced
        FROM {db}.spans WHERE kind IN ('llm', 'embedding')
        GROUP BY provider, model ORDER BY spend_usd DESC""",
    "Spend by tenant": """
        SELECT tenant_id AS tenant, uniqExact(trace_id) AS requests, round(sum(cost_usd), 4) AS spend_usd,
               round(sum(cost_usd) / uniqExact(trace_id) * 1000, 4) AS usd_per_1k_requests
        FROM {db}.spans GROUP BY tenant ORDER BY spend_usd DESC""",
    "LLM latency by model (ms)": """
        SELECT model_requested AS model, count() AS calls,
               round(quantile(0.5)(duration_ms)) AS p50, round(quantile(0.95)(duration_ms)) AS p95,
               round(quantile(0.95)(ttft_ms)) AS ttft_p95,
               round(countIf(status = 'error') / count() * 100, 2) AS error_pct
        FROM {db}.spans WHERE kind = 'llm' GROUP BY model ORDER BY calls DESC""",
    "Cache hit rate by layer": """
        SELECT cache_layer AS layer, count() AS lookups, countIf(cache_hit) AS hits,
               round(countIf(cache_hit) / count() * 100, 1) AS hit_rate_pct
        FROM {db}.spans WHERE kind = 'cache' GROUP BY layer ORDER BY layer""",
}


def print_summary(settings: Settings, console: Console) -> None:
    for title, sql in SUMMARY_QUERIES.items():
        console.print(formatted(run_query(settings, sql.format(db=settings.clickhouse_database)), "table", title))
