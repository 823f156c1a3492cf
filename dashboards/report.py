"""`spanline report`: the dashboards' panels, with the same queries, as one self-contained HTML
file (inline CSS and SVG, no script, nothing fetched), for users without Grafana.

Each panel's SQL is expanded exactly as Grafana would expand it for the report's window with
every variable at All (:mod:`spanline.dashboards.macros`), then run through a query function:
:func:`spanline.sql.queries.run_query` in the CLI, which goes through the running service when the
embedded chDB is owned by the worker.

After the dashboards, the report draws the waterfalls of the window's top traces (slowest,
costliest, failed: :data:`REPORT_TRACES`) from :mod:`spanline.traces`, the same trace code as
`spanline trace`; a trace table's trace id links to its waterfall when it is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from spanline.contracts import Contract, load_contracts
from spanline.dashboards.catalog import ANNOTATIONS, VARIABLES, build_dashboards
from spanline.dashboards.formatting import column_unit, format_value, is_number
from spanline.dashboards.macros import ALL, TimeRange, Variable, expand
from spanline.dashboards.model import Dashboard, Panel, with_database
from spanline.dashboards.svg import Marker, Series, bar_chart, color, line_chart, threshold_color, waterfall
from spanline.errors import ConfigError
from spanline.settings import Settings
from spanline.sql.queries import QueryResult, run_query
from spanline.traces.fetch import Runner, fetch_trace, rank_traces
from spanline.traces.links import trace_command
from spanline.traces.tree import Trace

#: Waterfalls the report draws: the window's worst traces per ranking (a trace drawn once).
REPORT_TRACES = (("slowest", 3), ("costliest", 2), ("failed", 2))
#: Query intervals the report picks from: the smallest giving at most MAX_POINTS per series.
NICE_INTERVALS_S = (60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
MAX_POINTS = 120
TABLE_ROWS = 15
MARKER_COLORS = ("#e02f44", "#8f3bb8")


@dataclass
class Report:
    html: str
    panels: int
    failures: dict[str, str] = field(default_factory=dict)  # panel title -> error
    traces: int = 0  # waterfalls drawn


def report_interval(start: datetime, end: datetime) -> timedelta:
    span = (end - start).total_seconds()
    return timedelta(seconds=next((s for s in NICE_INTERVALS_S if span / s <= MAX_POINTS), NICE_INTERVALS_S[-1]))


def render_report(
    run: Runner, database: str, start: datetime, end: datetime, contracts: list[Contract] | None = None
) -> Report:
    """Every dashboard's panels for [start, end] with all tenants, services, features and models,
    then the waterfalls of the window's top traces."""
    time_range = TimeRange(start, end, report_interval(start, end))
    variables = [Variable(v.name, [ALL]) for v in VARIABLES]

    def query(sql: str) -> QueryResult:
        return run(expand(with_database(sql, database), time_range, variables), {})

    failures: dict[str, str] = {}
    traces = _top_traces(run, database, start, end, failures)
    drawn = {trace.trace_id for _, trace in traces}
    markers = _markers(query, failures)
    dashboards = build_dashboards(load_contracts() if contracts is None else contracts)
    sections, count = [], 0
    for dashboard in dashboards:
        cards = []
        for panel in dashboard.panels:
            count += 1
            try:
                body = _panel_body(panel, query(panel.sql), time_range, markers, drawn)
            except Exception as exc:  # one broken panel must not hide the others; it is reported
                failures[panel.title] = str(exc)
                body = f'<p class="error">query failed: {escape(str(exc)[:300])}</p>'
            cards.append(_card(panel, body))
        sections.append(_section(dashboard, cards))
    sections.append(_traces_section(traces))
    nav = " · ".join(f'<a href="#{escape(d.uid)}">{escape(d.title)}</a>' for d in dashboards)
    nav += ' · <a href="#traces">Top traces</a>'
    return Report(_page(sections, nav, time_range, count, markers), count, failures, len(traces))


def _top_traces(
    run: Runner, database: str, start: datetime, end: datetime, failures: dict[str, str]
) -> list[tuple[str, Trace]]:
    """(why it is shown, trace) for the worst traces of the window, each trace once."""
    shown: list[tuple[str, Trace]] = []
    for rank, count in REPORT_TRACES:
        try:
            ranked = rank_traces(run, database, rank, start, end, limit=count)
            for place, figures in enumerate(ranked, start=1):
                if any(trace.trace_id == figures.trace_id for _, trace in shown):
                    continue
                trace = fetch_trace(run, database, figures.trace_id)
                if trace is not None:
                    shown.append((f"{rank} #{place}", trace))
        except Exception as exc:  # the panels above still make a report
            failures[f"{rank} traces"] = str(exc)
    return shown


def _traces_section(traces: list[tuple[str, Trace]]) -> str:
    cards = []
    for why, trace in traces:
        totals = trace.totals
        critical = ", ".join(
            f"{kind} {format_value(ms, 'ms')}" for kind, ms in list(totals.critical_by_kind.items())[:4]
        )
        orphans = f" · {len(trace.orphans)} orphan span(s)" if trace.orphans else ""
        summary = (
            f"{', '.join(trace.tenants)} · {trace.start:%Y-%m-%d %H:%M:%S} UTC · {format_value(totals.duration_ms, 'ms')} · "
            f"{totals.spans} spans · {totals.errors} failed · {totals.retries} retries · "
            f"{format_value(totals.cost_usd, 'currencyUSD')} · tokens in {totals.input_tokens:,} "
            f"(cached {totals.cache_read_tokens:,}) out {totals.output_tokens:,} "
            f"(reasoning {totals.reasoning_tokens:,}) · critical path {critical}{orphans}"
        )
        cards.append(
            f'<article class="panel trace" id="trace-{escape(trace.trace_id)}" style="grid-column: span 24">'
            f"<h3>{escape(why.capitalize())}: trace {escape(trace.trace_id)}</h3>"
            f'<p class="description">{escape(summary)} · <code>{escape(trace_command(trace.trace_id))}</code></p>'
            f"{waterfall(trace)}</article>"
        )
    body = "".join(cards) or '<p class="empty">No traces in this window.</p>'
    return (
        '<section id="traces"><h2>Top traces</h2><p class="description">The slowest, costliest and failed '
        "traces of the window as waterfalls: one bar per span on the trace's time scale, indented by parent, "
        "outlined on the critical path, red when failed; hover a bar for its figures.</p>"
        f'<div class="grid">{body}</div></section>'
    )


def _markers(query: Callable[[str], QueryResult], failures: dict[str, str]) -> list[Marker]:
    """Alert history and model version changes, drawn on every time series like Grafana does."""
    markers = []
    for annotation, tint in zip(ANNOTATIONS, MARKER_COLORS, strict=True):
        try:
            result = query(annotation.sql)
        except Exception as exc:
            failures[f"annotation {annotation.name}"] = str(exc)
            continue
        frame = _frame(result)
        if frame.empty:
            continue
        text = frame["title"] + ": " + frame["text"] if "title" in frame else frame["text"]
        markers += [Marker(_utc(t), f"{annotation.name}: {s}", tint) for t, s in zip(frame["time"], text, strict=True)]
    return markers


_ISO_MOMENT = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"


def _frame(result: QueryResult) -> pd.DataFrame:
    """Rows as a frame; timestamps parsed whether they came as datetimes (direct) or as ISO text
    (JSON from the running service)."""
    frame = pd.DataFrame(result.rows, columns=result.columns)
    for column in frame.columns:
        values = frame[column]
        if column == "time" or (
            values.dtype == object
            and len(values)
            and values.map(lambda v: isinstance(v, str)).all()
            and values.str.match(_ISO_MOMENT).all()
        ):
            frame[column] = pd.to_datetime(values, utc=True, format="ISO8601")
    return frame


def _utc(moment: Any) -> datetime:
    """A timezone-aware UTC datetime; ClickHouse's DateTime('UTC') values may arrive naive."""
    stamp = pd.Timestamp(moment)
    aware: datetime = (stamp.tz_convert(UTC) if stamp.tzinfo else stamp.tz_localize(UTC)).to_pydatetime()
    return aware


def _panel_body(
    panel: Panel, result: QueryResult, time_range: TimeRange, markers: list[Marker], drawn: set[str]
) -> str:
    frame = _frame(result)
    if frame.empty:
        return '<p class="empty">No data in this window.</p>'
    if panel.kind == "stat":
        return _stat(panel, frame)
    if panel.kind == "timeseries":
        return _timeseries(panel, frame, time_range, markers)
    if panel.kind == "bargauge":
        labels = frame.iloc[:, 0].astype(str).tolist()
        values = [float(v) if is_number(v) else math.nan for v in frame.iloc[:, 1]]
        return bar_chart(labels, values, panel.unit, panel.thresholds, panel.base)
    return _table(panel, frame, drawn)


def _stat(panel: Panel, frame: pd.DataFrame) -> str:
    cells = []
    for column in frame.columns:
        value = frame[column].iloc[0]
        value = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
        tint = threshold_color(float(value) if is_number(value) else None, panel.thresholds, panel.base)
        cells.append(
            f'<div class="stat"><span class="value" style="color:{_css_color(tint)}">'
            f'{escape(format_value(value, panel.unit))}</span><span class="label">{escape(column)}</span></div>'
        )
    return "".join(cells)


def _timeseries(panel: Panel, frame: pd.DataFrame, time_range: TimeRange, markers: list[Marker]) -> str:
    labels = [c for c in frame.columns[1:] if not pd.api.types.is_numeric_dtype(frame[c])]
    numbers = [c for c in frame.columns[1:] if c not in labels]
    series = []
    groups = frame.groupby(labels, sort=True) if labels else [((), frame)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        for column in numbers:
            name = " / ".join(str(k) for k in key) or column
            if key and len(numbers) > 1:
                name += f" {column}"
            points = [
                (_utc(t), None if pd.isna(v) else float(v)) for t, v in zip(group["time"], group[column], strict=True)
            ]
            series.append(Series(name, points))
    chart = line_chart(series, time_range.start, time_range.end, panel.unit, panel.thresholds, markers)
    legend = "".join(
        f'<span><i style="background:{color(i)}"></i>{escape(s.name)}</span>' for i, s in enumerate(series)
    )
    return f'{chart}<div class="legend">{legend}</div>'


def _table(panel: Panel, frame: pd.DataFrame, drawn: set[str]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.head(TABLE_ROWS).iterrows():
        cells = []
        for column in frame.columns:
            value = row[column]
            value = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
            if isinstance(value, pd.Timestamp):
                value = value.to_pydatetime()
            numeric = is_number(value)
            text = escape(format_value(value, column_unit(column, panel.unit)))
            if panel.trace_links and column == "trace_id" and value in drawn:
                text = f'<a href="#trace-{text}">{text}</a>'
            cells.append(f'<td class="{"num" if numeric else "txt"}">{text}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f'<p class="more">{len(frame) - TABLE_ROWS} more rows in Grafana</p>' if len(frame) > TABLE_ROWS else ""
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>{more}'


def _card(panel: Panel, body: str) -> str:
    return (
        f'<article class="panel {panel.kind}" style="grid-column: span {panel.width}">'
        f'<h3 title="{escape(panel.description)}">{escape(panel.title)}</h3>'
        f'<p class="description">{escape(panel.description)}</p>{body}</article>'
    )


def _section(dashboard: Dashboard, cards: list[str]) -> str:
    return (
        f'<section id="{escape(dashboard.uid)}"><h2>{escape(dashboard.title)}</h2>'
        f'<p class="description">{escape(dashboard.description)}</p><div class="grid">{"".join(cards)}</div></section>'
    )


def _css_color(name: str) -> str:
    return {"green": "#37872d", "orange": "#e57a00", "red": "#c4162a"}.get(name, name)


def _page(sections: list[str], nav: str, time_range: TimeRange, count: int, markers: list[Marker]) -> str:
    window = f"{time_range.start:%Y-%m-%d %H:%M} – {time_range.end:%Y-%m-%d %H:%M} UTC"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Spanline report {escape(window)}</title>
<style>{CSS}</style></head>
<body><header><h1>Spanline report</h1><p>{escape(window)} · {count} panels · interval {time_range.interval}
 · {len(markers)} annotations (alerts, model version changes) · generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>
<nav>{nav}</nav></header>
{"".join(sections)}
</body></html>
"""


CSS = """
body { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; background: #f4f5f5;
       color: #24292e; }
header { background: #161719; color: #e9edf2; padding: 14px 24px; }
header h1 { margin: 0 0 4px; font-size: 20px; } header p { margin: 0 0 6px; color: #9fa7b3; }
nav a { color: #6e9fff; text-decoration: none; margin-right: 4px; }
section { padding: 8px 24px 16px; } h2 { font-size: 17px; margin: 14px 0 2px; }
.grid { display: grid; grid-template-columns: repeat(24, 1fr); gap: 10px; }
.panel { background: #fff; border: 1px solid #dce1e6; border-radius: 4px; padding: 8px 10px; min-width: 0; }
.panel h3 { font-size: 13px; margin: 0; } .description { color: #6a737d; font-size: 11px; margin: 2px 0 6px; }
.chart { width: 100%; height: auto; display: block; }
line.gridline { stroke: #e4e7eb; } .axis { font-size: 10px; fill: #6a737d; }
.threshold { stroke-dasharray: 5 4; stroke-width: 1.5; } .marker { stroke-dasharray: 2 3; stroke-width: 1.2; }
.legend span { display: inline-block; margin-right: 10px; font-size: 11px; }
.legend i { display: inline-block; width: 10px; height: 3px; margin-right: 4px; vertical-align: middle; }
.stat { display: inline-block; margin: 4px 18px 4px 0; } .stat .value { font-size: 28px; font-weight: 600; display: block; }
.stat .label { color: #6a737d; font-size: 11px; }
.table { overflow-x: auto; } table { border-collapse: collapse; width: 100%; font-size: 11px; }
th { text-align: left; border-bottom: 1px solid #dce1e6; padding: 3px 6px; color: #6a737d; white-space: nowrap; }
td { border-bottom: 1px solid #f0f1f3; padding: 3px 6px; white-space: nowrap; } td.num { text-align: right; }
.error { color: #c4162a; } .empty, .more { color: #6a737d; font-style: italic; }
.waterfall { width: 100%; height: auto; display: block; } .waterfall .orphan { fill: #c4162a; }
"""


_DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``30m``, ``1h``, ``7d`` as a timedelta (the report's ``--since``)."""
    value, unit = text[:-1], text[-1:].lower()
    if unit not in _DURATION_UNITS or not value.replace(".", "", 1).isdigit() or float(value) <= 0:
        raise ConfigError(f"--since takes a positive duration such as 30m, 1h or 7d, got {text!r}")
    return timedelta(seconds=float(value) * _DURATION_UNITS[unit])


def write_report(settings: Settings, since: timedelta, out: Path, end: datetime | None = None) -> Report:
    """Render the window ``[end - since, end]`` (end = now, to the second) to ``out``."""
    end = (end or datetime.now(UTC)).replace(microsecond=0)

    def run(sql: str, parameters: dict[str, Any]) -> QueryResult:
        return run_query(settings, sql, parameters)

    report = render_report(run, settings.clickhouse_database, end - since, end)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.html, encoding="utf-8")
    return report
