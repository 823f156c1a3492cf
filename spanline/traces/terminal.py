"""A trace as a terminal waterfall, and a list of ranked traces, as rich renderables."""

from __future__ import annotations

from rich.console import Group, JustifyMethod, RenderableType
from rich.table import Table
from rich.text import Text

from spanline.traces.fetch import RankedTrace
from spanline.traces.tree import SpanRow, Trace, WaterfallRow

BAR_WIDTH = 30
KIND_COLORS = {
    "request": "bright_blue",
    "agent_step": "blue",
    "llm": "magenta",
    "embedding": "cyan",
    "retrieval": "green",
    "rerank": "green",
    "tool": "yellow",
    "cache": "bright_cyan",
    "eval": "bright_black",
}


def waterfall(trace: Trace, bar_width: int = BAR_WIDTH) -> RenderableType:
    """The span tree with one time bar per span on the trace's scale, then the totals."""
    total_ms = max(trace.totals.duration_ms, 1.0)
    table = Table(
        title=_title(trace), title_justify="left", show_edge=False, pad_edge=False, header_style="bold", expand=False
    )
    table.add_column("span", no_wrap=True)
    table.add_column(f"0 ─ {_duration(total_ms)}", no_wrap=True)
    table.add_column("ms", justify="right")
    table.add_column("ttft", justify="right")
    table.add_column("model")
    table.add_column("tokens in/cached/out/reason", justify="right")
    table.add_column("cost $", justify="right")
    table.add_column("status")
    table.add_column("details")
    for row in trace.rows:
        span = row.span
        table.add_row(
            _label(row),
            _bar(trace.offset_ms(span.start_time), span.duration_ms, total_ms, bar_width, row),
            f"{span.duration_ms:,.0f}",
            "" if span.ttft_ms is None else f"{span.ttft_ms:,.0f}",
            _model(span),
            _tokens(span),
            _cost(span),
            Text(_status(span), style="red" if span.status == "error" else ""),
            _details(span),
        )
    return Group(table, _totals(trace))


def _title(trace: Trace) -> str:
    return (
        f"trace {trace.trace_id} · tenant {', '.join(trace.tenants)} · {trace.start:%Y-%m-%d %H:%M:%S} UTC · "
        f"{_duration(trace.totals.duration_ms)} · {trace.totals.spans} spans"
    )


def _label(row: WaterfallRow) -> Text:
    span = row.span
    text = Text(row.guide, style="bright_black")
    text.append(span.kind, style=KIND_COLORS.get(span.kind, "white"))
    text.append(f" {span.name}")
    if row.orphan and span.parent_span_id:
        text.append(f" (orphan: parent {span.parent_span_id} missing)", style="bold red")
    return text


def _bar(offset_ms: float, duration_ms: float, total_ms: float, width: int, row: WaterfallRow) -> Text:
    start = min(int(offset_ms / total_ms * width), width - 1)
    length = max(1, min(round(duration_ms / total_ms * width), width - start))
    style = "red" if row.span.status == "error" else KIND_COLORS.get(row.span.kind, "white")
    bar = Text(" " * start, style="")
    bar.append(("█" if row.on_critical_path else "▒") * length, style=style)
    bar.append(" " * (width - start - length))
    return bar


def _model(span: SpanRow) -> str:
    if not span.model_requested:
        return ""
    if span.model_response and span.model_response != span.model_requested:
        return f"{span.model_requested} → {span.model_response}"
    return span.model_requested


def _tokens(span: SpanRow) -> str:
    parts = (span.input_tokens, span.cache_read_tokens, span.output_tokens, span.reasoning_tokens)
    return "" if not any(parts) else "/".join(f"{n:,}" for n in parts)


def _cost(span: SpanRow) -> str:
    if span.cost_usd == 0 and not span.cost_known and (span.input_tokens or span.output_tokens):
        return "unpriced"
    return "" if span.cost_usd == 0 else f"{span.cost_usd:.5f}"


def _status(span: SpanRow) -> str:
    return f"error {span.error_type}".strip() if span.status == "error" else span.status


def _details(span: SpanRow) -> str:
    """Only what the span has: attempt, cache, route, prompt, retrieval, tool, eval."""
    parts = []
    if span.attempt > 0:
        parts.append(f"attempt {span.attempt + 1}")
    if span.cache_layer:
        outcome = "" if span.cache_hit is None else " hit" if span.cache_hit else " miss"
        parts.append(f"cache {span.cache_layer}{outcome}")
    if span.route or span.routing_reason:
        parts.append(f"route {span.route or '-'} ({span.routing_reason or '-'})")
    if span.prompt_version:
        parts.append(
            f"prompt {span.prompt_id}@{span.prompt_version}" if span.prompt_id else f"prompt {span.prompt_version}"
        )
    if span.index_name:
        parts.append(f"index {span.index_name}" + ("" if span.top_k is None else f" top-{span.top_k}"))
    if span.tool_name:
        parts.append(f"tool {span.tool_name}")
    if span.eval_score is not None:
        parts.append(f"eval {span.eval_name or ''} {span.eval_score:.2f}".replace("  ", " "))
    return " · ".join(parts)


def _totals(trace: Trace) -> Text:
    totals = trace.totals
    text = Text()
    text.append("totals ", style="bold")
    text.append(
        f"cost ${totals.cost_usd:.5f} · tokens in {totals.input_tokens:,} (cached {totals.cache_read_tokens:,}) "
        f"out {totals.output_tokens:,} (reasoning {totals.reasoning_tokens:,}) · {totals.errors} failed span(s) · "
        f"{totals.retries} retr{'y' if totals.retries == 1 else 'ies'}\n"
    )
    text.append("critical path ", style="bold")
    shares = ", ".join(
        f"{kind} {_duration(ms)} ({ms / max(totals.critical_path_ms, 1e-9):.0%})"
        for kind, ms in totals.critical_by_kind.items()
    )
    text.append(f"{_duration(totals.critical_path_ms)} (█ bars): {shares}")
    orphans = trace.orphans
    if orphans:
        text.append("\norphans ", style="bold red")
        text.append(
            f"{len(orphans)} span(s) whose parent is not stored, shown at the top level: "
            + ", ".join(f"{row.span.span_id} (parent {row.span.parent_span_id})" for row in orphans)
        )
    return text


def _duration(ms: float) -> str:
    return f"{ms:,.0f} ms" if ms < 10_000 else f"{ms / 1000:,.1f} s"


def ranked_table(traces: list[RankedTrace], rank: str, title: str) -> Table:
    """The ranked traces with the figures that rank them and the command to open each."""
    table = Table(title=title, title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("#", "right"),
        ("started (UTC)", "left"),
        ("tenant", "left"),
        ("feature", "left"),
        ("root", "left"),
        ("duration ms", "right"),
        ("cost $", "right"),
        ("tokens", "right"),
        ("spans", "right"),
        ("failed", "right"),
        ("retries", "right"),
        ("open with", "left"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify, style="bold" if _ranks_by(rank, column) else None, no_wrap=True)
    for index, trace in enumerate(traces, start=1):
        table.add_row(
            str(index),
            f"{trace.started:%Y-%m-%d %H:%M:%S}",
            trace.tenant,
            trace.root_feature,
            trace.root_name,
            f"{trace.duration_ms:,.0f}",
            f"{trace.cost_usd:.5f}",
            f"{trace.tokens:,}",
            str(trace.spans),
            f"{trace.errors}{' (root)' if trace.root_failed else ''}",
            str(trace.retries),
            f"spanline trace {trace.trace_id}",
        )
    return table


def _ranks_by(rank: str, column: str) -> bool:
    return {"slowest": "duration ms", "costliest": "cost $", "failed": "failed", "retried": "retries"}[rank] == column
