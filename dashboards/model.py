"""What a dashboard is, independent of how it is shown: panels with one SQL query each.

Grafana JSON (:mod:`spanline.dashboards.grafana`) and the static report
(:mod:`spanline.dashboards.report`) are both built from these objects, so the report shows
exactly the queries Grafana runs. SQL is written for grafana-clickhouse-datasource (macros and
template variables, see :mod:`spanline.dashboards.macros`) with the database as
``${database}``, filled in by :func:`with_database` when the JSON is generated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from spanline.sql.templates import identifier

PanelKind = Literal["timeseries", "stat", "table", "bargauge", "traces"]
#: sqlutil.FormatOption values the plugin reads from a query's ``format``.
FORMAT_TIME_SERIES, FORMAT_TABLE, FORMAT_TRACE = 0, 1, 3
DATABASE_TOKEN = "${database}"


@dataclass(frozen=True)
class Step:
    """A threshold step: from ``value`` upward the figure is drawn in ``color``."""

    value: float
    color: str


@dataclass(frozen=True)
class Panel:
    """One panel: what it shows (title, description), how (kind, unit, thresholds), and its SQL.

    Time series queries return ``time`` first, then optional text columns naming the series,
    then numeric columns (long format; the plugin pivots it). Stats return one row of numbers.
    Values below the first of ``thresholds`` get the ``base`` colour (red base + green step =
    higher is better, as for recall and cache hit rate).
    """

    title: str
    description: str
    kind: PanelKind
    sql: str
    unit: str = "short"
    base: str = "green"
    thresholds: tuple[Step, ...] = ()
    width: int = 12
    height: int = 8
    decimals: int | None = None
    stacked: bool = False
    #: A table whose ``trace_id`` column links to that trace's waterfall (the trace dashboard).
    trace_links: bool = False

    @property
    def format(self) -> int:
        return {"timeseries": FORMAT_TIME_SERIES, "traces": FORMAT_TRACE}.get(self.kind, FORMAT_TABLE)


@dataclass(frozen=True)
class Annotation:
    """A dashboard annotation fed by a query returning ``time``, ``title``/``text`` and ``tags``."""

    name: str
    sql: str
    color: str


@dataclass(frozen=True)
class TemplateVariable:
    """A multi-value dashboard variable with an All option, filled by a query; or, with
    ``textbox``, one value typed in or set by a link (``sql`` unused)."""

    name: str
    label: str
    sql: str
    textbox: bool = False


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = ("spanline",)
    variables: tuple[TemplateVariable, ...] = field(default_factory=tuple)
    annotations: tuple[Annotation, ...] = field(default_factory=tuple)
    time_from: str = "now-6h"


def with_database(sql: str, database: str) -> str:
    """``sql`` with ``${database}`` filled. Not :func:`spanline.sql.templates.render`: Grafana's
    own ``${var:format}`` syntax must pass through untouched."""
    return sql.replace(DATABASE_TOKEN, identifier(database))
