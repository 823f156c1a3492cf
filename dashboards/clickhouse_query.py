"""A grafana-foundation-sdk Dataquery for grafana-clickhouse-datasource, which the SDK lacks.

The plugin's SQL editor stores a panel target as ``{refId, datasource, editorType: "sql",
queryType, rawSql, format}``; ``format`` is the plugin's sqlutil.FormatOption (0 = time series,
pivoted from long to wide; 1 = table; 3 = trace, the Traces panel's span frame).
"""

from __future__ import annotations

from typing import Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as dashboard_models

PLUGIN_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_UID = "spanline-clickhouse"
QUERY_TYPES = {0: "timeseries", 1: "table", 3: "traces"}


def datasource_ref(uid: str = DATASOURCE_UID) -> dashboard_models.DataSourceRef:
    return dashboard_models.DataSourceRef(type_val=PLUGIN_TYPE, uid=uid)


class ClickHouseSqlQuery(cogvariants.Dataquery):
    def __init__(self) -> None:
        self.ref_id = "A"
        self.datasource_uid = DATASOURCE_UID
        self.raw_sql = ""
        self.format = 1

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": {"type": PLUGIN_TYPE, "uid": self.datasource_uid},
            "editorType": "sql",
            "queryType": QUERY_TYPES[self.format],
            "rawSql": self.raw_sql,
            "format": self.format,
        }


class ClickHouseQuery(cogbuilder.Builder[ClickHouseSqlQuery]):
    """Builder in the SDK's style: ``ClickHouseQuery().ref_id("A").raw_sql(sql).format(0)``."""

    def __init__(self) -> None:
        self._internal = ClickHouseSqlQuery()

    def build(self) -> ClickHouseSqlQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def datasource_uid(self, uid: str) -> Self:
        self._internal.datasource_uid = uid
        return self

    def raw_sql(self, sql: str) -> Self:
        self._internal.raw_sql = sql
        return self

    def format(self, format_option: int) -> Self:
        if format_option not in QUERY_TYPES:
            raise ValueError(f"format must be one of {sorted(QUERY_TYPES)} (time series, table, trace)")
        self._internal.format = format_option
        return self
