"""Charts as inline SVG, drawn in Python: the report needs no script, CDN or network."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from html import escape

from spanline.dashboards.formatting import format_value
from spanline.dashboards.model import Step
from spanline.traces.tree import Trace, WaterfallRow

PALETTE = ("#3274d9", "#ff9830", "#56a64b", "#e02f44", "#8f3bb8", "#00b5b8", "#f2cc0c", "#a16e4b", "#6e8ab3", "#c15c17")
WIDTH, HEIGHT = 560, 210
LEFT, RIGHT, TOP, BOTTOM = 64, 22, 10, 26


@dataclass(frozen=True)
class Series:
    name: str
    points: list[tuple[datetime, float | None]]


@dataclass(frozen=True)
class Marker:
    at: datetime
    text: str
    color: str


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def line_chart(
    series: list[Series],
    start: datetime,
    end: datetime,
    unit: str,
    thresholds: tuple[Step, ...] = (),
    markers: list[Marker] | None = None,
) -> str:
    """Lines over [start, end], y from 0 (or the minimum if negative), threshold lines dashed and
    annotation markers as vertical lines with their text as a tooltip."""
    values = [v for s in series for _, v in s.points if v is not None and math.isfinite(v)]
    top = max(values, default=1.0)
    visible = [step for step in thresholds if 0 < step.value <= max(top, 1e-12) * 2]
    top = max([top, *[step.value for step in visible]]) * 1.08 or 1.0
    bottom = min(0.0, min(values, default=0.0))
    span_s = max((end - start).total_seconds(), 1.0)

    def x(moment: datetime) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * (moment - start).total_seconds() / span_s

    def y(value: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - (value - bottom) / ((top - bottom) or 1.0))

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg" role="img">']
    for i in range(5):
        value = bottom + (top - bottom) * i / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" class="gridline"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" class="axis" text-anchor="end">'
            f"{escape(format_value(value, unit))}</text>"
        )
    for i in range(5):
        moment = start + (end - start) * i / 4
        parts.append(
            f'<text x="{x(moment):.1f}" y="{HEIGHT - 8}" class="axis" text-anchor="middle">{moment:%H:%M}</text>'
        )
    for step in visible:
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(step.value):.1f}" y2="{y(step.value):.1f}" '
            f'stroke="{_css(step.color)}" class="threshold"><title>threshold {escape(format_value(step.value, unit))}'
            f"</title></line>"
        )
    for marker in markers or []:
        if start <= marker.at <= end:
            parts.append(
                f'<line x1="{x(marker.at):.1f}" x2="{x(marker.at):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" '
                f'stroke="{_css(marker.color)}" class="marker"><title>{escape(marker.text)}</title></line>'
            )
    for index, one in enumerate(series):
        for run in _runs(one.points):
            coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in run)
            if len(run) == 1:
                t, v = run[0]
                parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color(index)}"/>')
            else:
                parts.append(f'<polyline points="{coords}" fill="none" stroke="{color(index)}" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(labels: list[str], values: list[float], unit: str, thresholds: tuple[Step, ...], base: str) -> str:
    """Horizontal bars, longest first as given, coloured by the panel's thresholds."""
    row, label_w, value_w, width_all = 22, 130, 70, 400
    height = row * len(labels) + 6
    top = max([v for v in values if math.isfinite(v)], default=1.0) or 1.0
    parts = [
        f'<svg class="chart bars" viewBox="0 0 {width_all} {height}" xmlns="http://www.w3.org/2000/svg" role="img">'
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        width = max((width_all - label_w - value_w) * (value / top if math.isfinite(value) else 0), 1)
        y0 = 3 + i * row
        parts.append(
            f'<text x="{label_w - 6}" y="{y0 + 14}" class="axis" text-anchor="end">{escape(label[:24])}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y0 + 2}" width="{width:.1f}" height="{row - 6}" rx="2" '
            f'fill="{_css(threshold_color(value, thresholds, base))}"/>'
        )
        parts.append(
            f'<text x="{label_w + width + 6:.1f}" y="{y0 + 14}" class="axis">{escape(format_value(value, unit))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def threshold_color(value: float | None, thresholds: tuple[Step, ...], base: str) -> str:
    """The colour Grafana gives ``value``: the last step at or below it, else the base colour."""
    chosen = base
    for step in thresholds:
        if value is not None and math.isfinite(value) and value >= step.value:
            chosen = step.color
    return chosen


_NAMED = {"green": "#56a64b", "orange": "#ff9830", "red": "#e02f44", "purple": "#8f3bb8", "blue": "#3274d9"}


def _css(name: str) -> str:
    return _NAMED.get(name, name)


def _runs(points: list[tuple[datetime, float | None]]) -> list[list[tuple[datetime, float]]]:
    """Consecutive points with values: a missing value breaks the line, as Grafana draws it."""
    runs: list[list[tuple[datetime, float]]] = [[]]
    for moment, value in sorted(points, key=lambda p: p[0]):
        if value is None or not math.isfinite(value):
            runs.append([])
        else:
            runs[-1].append((moment, value))
    return [run for run in runs if run]


KIND_FILL = {
    "request": "#3274d9",
    "agent_step": "#6e8ab3",
    "llm": "#8f3bb8",
    "embedding": "#00b5b8",
    "retrieval": "#56a64b",
    "rerank": "#56a64b",
    "tool": "#ff9830",
    "cache": "#00b5b8",
    "eval": "#a16e4b",
}
ERROR_FILL = "#e02f44"
WATERFALL_ROW, WATERFALL_LABEL, WATERFALL_WIDTH = 18, 300, 1100


def waterfall(trace: Trace) -> str:
    """One bar per span on the trace's time scale, indented by depth; the critical path outlined,
    failed spans red, orphans marked; a span's figures are its tooltip."""
    total = max(trace.totals.duration_ms, 1.0)
    plot = WATERFALL_WIDTH - WATERFALL_LABEL - 70
    height = WATERFALL_ROW * len(trace.rows) + 22
    parts = [
        f'<svg class="waterfall" viewBox="0 0 {WATERFALL_WIDTH} {height}" xmlns="http://www.w3.org/2000/svg" role="img">'
    ]
    for i in range(5):
        x = WATERFALL_LABEL + plot * i / 4
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height - 18}" class="gridline"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{height - 6}" class="axis" text-anchor="middle">'
            f"{escape(format_value(total * i / 4, 'ms'))}</text>"
        )
    for index, row in enumerate(trace.rows):
        span = row.span
        y = index * WATERFALL_ROW
        x = WATERFALL_LABEL + plot * trace.offset_ms(span.start_time) / total
        width = max(plot * span.duration_ms / total, 1.5)
        fill = ERROR_FILL if span.status == "error" else KIND_FILL.get(span.kind, "#6a737d")
        label = f"{span.kind} {span.name}" + (f"  (orphan: parent {span.parent_span_id} missing)" if row.orphan else "")
        outline = ' stroke="#161719" stroke-width="1.5"' if row.on_critical_path else ""
        parts.append(
            f'<text x="{4 + 12 * row.depth}" y="{y + 13}" class="axis{" orphan" if row.orphan else ""}">'
            f"{escape(label[:60])}</text>"
        )
        parts.append(
            f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="{WATERFALL_ROW - 6}" rx="2" fill="{fill}"{outline}>'
            f"<title>{escape(_span_tooltip(row))}</title></rect>"
        )
        parts.append(
            f'<text x="{min(x + width + 4, WATERFALL_WIDTH - 66):.1f}" y="{y + 13}" class="axis">'
            f"{escape(format_value(span.duration_ms, 'ms'))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _span_tooltip(row: WaterfallRow) -> str:
    span = row.span
    lines = [f"{span.kind} {span.name} · {span.status}{' ' + span.error_type if span.error_type else ''}"]
    if span.model_requested:
        response = f" → {span.model_response}" if span.model_response not in ("", span.model_requested) else ""
        lines.append(f"model {span.model_requested}{response}")
    if span.input_tokens or span.output_tokens:
        lines.append(
            f"tokens in {span.input_tokens} (cached {span.cache_read_tokens}) out {span.output_tokens} "
            f"(reasoning {span.reasoning_tokens}) · ${span.cost_usd:.5f}"
        )
    if span.ttft_ms is not None:
        lines.append(f"ttft {span.ttft_ms:.0f} ms")
    if span.attempt:
        lines.append(f"attempt {span.attempt + 1}")
    if row.on_critical_path:
        lines.append(f"critical path {row.critical_ms:.0f} ms")
    return "\n".join(lines)
