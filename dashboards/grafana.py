"""Grafana dashboard JSON from the panel definitions, built with grafana-foundation-sdk."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models

from spanline.dashboards.clickhouse_query import DATASOURCE_UID, ClickHouseQuery, datasource_ref
from spanline.dashboards.formatting import COLUMN_UNITS
from spanline.dashboards.model import Annotation, Dashboard, Panel, TemplateVariable, with_database
from spanline.traces.links import TRACE_DASHBOARD_UID, TRACE_VARIABLE

PanelBuilder = timeseries.Panel | stat.Panel | table.Panel | bargauge.Panel | dash.Panel
_BUILDERS: dict[str, Callable[[], PanelBuilder]] = {
    "timeseries": timeseries.Panel,
    "stat": stat.Panel,
    "table": table.Panel,
    "bargauge": bargauge.Panel,
    "traces": lambda: dash.Panel().type("traces"),  # the SDK has no builder for Grafana's Traces panel
}
#: A trace table's trace_id cell opens the trace dashboard on that trace, keeping the time range.
TRACE_LINK = {
    "title": "Open this trace's waterfall",
    "url": f"/d/{TRACE_DASHBOARD_UID}/{TRACE_DASHBOARD_UID}?var-{TRACE_VARIABLE}=${{__value.raw}}&${{__url_time_range}}",
}
GRID_WIDTH = 24


def dashboard_json(spec: Dashboard, database: str, datasource_uid: str = DATASOURCE_UID) -> dict[str, Any]:
    """The dashboard's JSON model as Grafana stores it (schemaVersion of Grafana 11.6)."""
    builder = (
        dash.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(list(spec.tags))
        .timezone("utc")
        .time(spec.time_from, "now")
        .refresh("1m")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
    )
    for variable in spec.variables:
        builder = builder.with_variable(_variable(variable, database, datasource_uid))
    for annotation in spec.annotations:
        builder = builder.annotation(_annotation(annotation, database, datasource_uid))
    x = y = row_height = 0
    for panel_id, panel in enumerate(spec.panels, start=1):
        if x + panel.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        builder = builder.with_panel(_panel(panel, panel_id, database, datasource_uid, x, y))
        x, row_height = x + panel.width, max(row_height, panel.height)
    model: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder, sort_keys=True))
    return model


def _panel(panel: Panel, panel_id: int, database: str, uid: str, x: int, y: int) -> PanelBuilder:
    query = ClickHouseQuery().ref_id("A").datasource_uid(uid).raw_sql(with_database(panel.sql, database))
    built = (
        _BUILDERS[panel.kind]()
        .id(panel_id)
        .title(panel.title)
        .description(panel.description)
        .datasource(datasource_ref(uid))
        .with_target(query.format(panel.format))
        .grid_pos(dashboard_models.GridPos(h=panel.height, w=panel.width, x=x, y=y))
        .unit(panel.unit)
        .thresholds(_thresholds(panel))
    )
    if panel.decimals is not None:
        built = built.decimals(panel.decimals)
    # The builder's class is the panel's kind (_BUILDERS).
    if isinstance(built, timeseries.Panel):
        built = built.interval("1m").line_width(2).fill_opacity(25 if panel.stacked else 10)
        if panel.thresholds:
            built = built.thresholds_style(
                common.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.DASHED)
            )
        if panel.stacked:
            built = built.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL))
    elif isinstance(built, stat.Panel):
        built = built.color_mode(common_models.BigValueColorMode.VALUE).graph_mode(common_models.BigValueGraphMode.NONE)
    elif isinstance(built, table.Panel):
        for pattern, unit in COLUMN_UNITS:
            built = built.override_by_regexp(pattern, [dashboard_models.DynamicConfigValue(id_val="unit", value=unit)])
        if panel.trace_links:
            built = built.override_by_name(
                "trace_id", [dashboard_models.DynamicConfigValue(id_val="links", value=[TRACE_LINK])]
            )
    elif isinstance(built, bargauge.Panel):
        built = (
            built.display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
            .orientation(common_models.VizOrientation.HORIZONTAL)
            .reduce_options(common.ReduceDataOptions().values(True).calcs([]))
        )
    return built


def _thresholds(panel: Panel) -> dash.ThresholdsConfig:
    steps = [dashboard_models.Threshold(value=None, color=panel.base)]
    steps += [dashboard_models.Threshold(value=step.value, color=step.color) for step in panel.thresholds]
    return dash.ThresholdsConfig().mode(dashboard_models.ThresholdsMode.ABSOLUTE).steps(steps)


def _variable(variable: TemplateVariable, database: str, uid: str) -> dash.QueryVariable | dash.TextBoxVariable:
    if variable.textbox:
        return dash.TextBoxVariable(variable.name).label(variable.label)
    return (
        dash.QueryVariable(variable.name)
        .label(variable.label)
        .datasource(datasource_ref(uid))
        .query(with_database(variable.sql, database))
        .multi(True)
        .include_all(True)
        .current(dashboard_models.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
    )


def _annotation(annotation: Annotation, database: str, uid: str) -> dash.AnnotationQuery:
    target = ClickHouseQuery().ref_id("Anno").datasource_uid(uid).raw_sql(with_database(annotation.sql, database))
    return (
        dash.AnnotationQuery()
        .name(annotation.name)
        .datasource(datasource_ref(uid))
        .enable(True)
        .icon_color(annotation.color)
        # The SDK types an annotation's target as its own AnnotationTarget (its own comment there says it "should
        # just be a normal query target"); Grafana passes the query to the plugin, which reads it.
        .target(target.format(1))  # type: ignore[arg-type]  # SDK annotation target typing (see above)
    )
