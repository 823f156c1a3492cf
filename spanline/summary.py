"""The demo's closing summary: spend, latency and cache figures straight from ClickHouse."""

from __future__ import annotations

from rich.console import Console

from spanline.analysis import formatted
from spanline.settings import Settings
from spanline.sql.queries import run_query
from spanline.sql.statements import render_statement

#: Title -> statement (sql/statements/) of each summary table, in print order.
SUMMARY_QUERIES: dict[str, str] = {
    "Spend by model": "summary_spend_by_model",
    "Spend by tenant": "summary_spend_by_tenant",
    "LLM latency by model (ms)": "summary_llm_latency",
    "Cache hit rate by layer": "summary_cache_hit_rate",
}


def print_summary(settings: Settings, console: Console) -> None:
    for title, name in SUMMARY_QUERIES.items():
        sql = render_statement(name, database=settings.clickhouse_database)
        console.print(formatted(run_query(settings, sql), "table", title))
