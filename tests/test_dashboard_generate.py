"""The committed dashboard JSON, the provisioning files and `spanline dashboards generate`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from spanline.contracts import load_contracts
from spanline.dashboards.catalog import build_dashboards, grafana_dashboards
from spanline.dashboards.generate import GENERATED_DIR, drifted, rendered, write_generated
from spanline.dashboards.model import with_database
from spanline.dashboards.pipeline import DATASOURCE_UID as PROMETHEUS_UID
from spanline.dashboards.pipeline import UID as PIPELINE_UID
from spanline.metrics import ALERTING_METRICS, RECEIVER_METRICS, WORKER_METRICS

PROVISIONING = GENERATED_DIR.parent / "provisioning"


def test_committed_json_matches_the_code() -> None:
    assert drifted() == [], "dashboards/generated is stale: run `spanline dashboards generate` and commit it"


def test_drift_is_detected(tmp_path: Path) -> None:
    write_generated(tmp_path)
    assert drifted(tmp_path) == []
    edited = tmp_path / "spanline-oncall.json"
    edited.write_text(edited.read_text().replace("On-call", "Oncall"))
    (tmp_path / "old.json").write_text("{}")
    assert drifted(tmp_path) == ["old.json", "spanline-oncall.json"]
    write_generated(tmp_path)
    assert drifted(tmp_path) == [] and not (tmp_path / "old.json").exists()


def test_json_carries_queries_units_thresholds_variables_and_annotations() -> None:
    specs = {d.uid: d for d in grafana_dashboards(load_contracts())}
    assert set(specs) - {d.uid for d in build_dashboards(load_contracts())} == {"spanline-trace"}
    files = rendered()
    assert set(files) == {f"{uid}.json" for uid in [*specs, PIPELINE_UID]}
    for uid, spec in specs.items():
        board = json.loads(files[f"{uid}.json"])
        assert board["uid"] == uid and board["title"] == spec.title
        if spec.uid == "spanline-trace":  # one trace, chosen by a link or typed in: no filters, no annotations
            assert [(v["name"], v["type"]) for v in board["templating"]["list"]] == [("trace_id", "textbox")]
        else:
            assert [v["name"] for v in board["templating"]["list"]] == ["tenant", "service", "feature", "model"]
            assert all(v["multi"] and v["includeAll"] and v["type"] == "query" for v in board["templating"]["list"])
            assert [a["name"] for a in board["annotations"]["list"]] == ["Alerts", "Model version changes"]
        assert len(board["panels"]) == len(spec.panels)
        for panel, expected in zip(board["panels"], spec.panels, strict=True):
            (target,) = panel["targets"]
            assert panel["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": "spanline-clickhouse"}
            assert target["editorType"] == "sql" and target["rawSql"] == with_database(expected.sql, "spanline")
            assert target["format"] == {"timeseries": 0, "traces": 3}.get(expected.kind, 1)
            assert panel["type"] == expected.kind and panel["description"] == expected.description
            defaults = panel["fieldConfig"]["defaults"]
            assert defaults["unit"] == expected.unit
            assert [s["value"] for s in defaults["thresholds"]["steps"]] == [None] + [
                s.value for s in expected.thresholds
            ]
            assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            if expected.kind == "table":  # mixed columns: money, rates and latencies get their own units
                overrides = {o["matcher"]["options"]: o["properties"] for o in panel["fieldConfig"]["overrides"]}
                assert overrides[r".*_ms$"] == [{"id": "unit", "value": "ms"}]
                by_name = [o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["id"] != "byRegexp"]
                assert by_name == ([TRACE_LINK_OVERRIDE] if expected.trace_links else [])


#: A trace table's trace_id cell links to the trace dashboard on that trace, in the same time range.
TRACE_LINK_OVERRIDE = {
    "matcher": {"id": "byName", "options": "trace_id"},
    "properties": [
        {
            "id": "links",
            "value": [
                {
                    "title": "Open this trace's waterfall",
                    "url": "/d/spanline-trace/spanline-trace?var-trace_id=${__value.raw}&${__url_time_range}",
                }
            ],
        }
    ],
}


def test_oncall_and_engineering_open_traces_from_their_trace_tables() -> None:
    tables = {
        (uid, p["title"])
        for uid in ("spanline-oncall", "spanline-engineering")
        for p in json.loads(rendered()[f"{uid}.json"])["panels"]
        if TRACE_LINK_OVERRIDE in p["fieldConfig"]["overrides"]
    }
    assert tables == {
        ("spanline-oncall", "Slowest traces"),
        ("spanline-oncall", "Failed traces"),
        ("spanline-oncall", "Active alerts"),  # the worst example trace of each incident
        ("spanline-engineering", "Slowest traces"),
        ("spanline-engineering", "Costliest traces"),
    }
    (trace_panel,) = json.loads(rendered()["spanline-trace.json"])["panels"]
    (target,) = trace_panel["targets"]
    assert trace_panel["type"] == "traces" and target["format"] == 3 and target["queryType"] == "traces"
    for alias in ("traceID", "spanID", "parentSpanID", "serviceName", "operationName", "startTime", "duration"):
        assert f" AS {alias}," in target["rawSql"], alias
    assert " AS tags," in target["rawSql"] and " AS serviceTags," in target["rawSql"]
    assert "${trace_id:singlequote}" in target["rawSql"] and "spanline.trace_index" in target["rawSql"]


def test_contract_targets_become_thresholds() -> None:
    oncall = json.loads(rendered()["spanline-oncall.json"])
    ttft = next(p for p in oncall["panels"] if p["title"].startswith("Time to first token"))
    p95_ttft = next(c.p95_ttft_ms for c in load_contracts() if c.tenant == "*")
    assert ttft["fieldConfig"]["defaults"]["thresholds"]["steps"][-1] == {"color": "red", "value": p95_ttft}
    executive = rendered()["spanline-executive.json"]
    budgets = {c.tenant: c.daily_budget_usd for c in load_contracts() if c.tenant != "*" and c.daily_budget_usd}
    assert budgets, "spanline/contracts.yaml names no tenant budget to draw"
    for tenant, budget in budgets.items():
        assert f"('{tenant}', {float(budget)})" in executive


def test_provisioning_files_point_at_the_generated_json_and_a_read_only_user() -> None:
    (source,) = yaml.safe_load((PROVISIONING / "datasources" / "spanline-clickhouse.yaml").read_text())["datasources"]
    assert source["type"] == "grafana-clickhouse-datasource" and source["uid"] == "spanline-clickhouse"
    assert source["jsonData"]["username"] == "grafana" and source["jsonData"]["defaultDatabase"] == "spanline"
    assert source["secureJsonData"]["password"] == "${GRAFANA_CLICKHOUSE_PASSWORD}"
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "spanline.yaml").read_text())["providers"]
    assert provider["type"] == "file" and provider["folderUid"] == "spanline"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/spanline"
    user = ET.parse(PROVISIONING / "clickhouse" / "grafana-reader.xml").getroot()
    assert user.findtext("users/grafana/profile") == "grafana_readonly"
    assert user.findtext("profiles/grafana_readonly/readonly") == "2"
    assert [q.text for q in user.findall("users/grafana/grants/query")] == ["GRANT SELECT ON spanline.*"]


def test_cli_generate_writes_the_files(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "spanline.cli", "dashboards", "generate", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(rendered())
    assert drifted(tmp_path) == []


def pipeline_exprs() -> list[str]:
    board = json.loads(rendered()[f"{PIPELINE_UID}.json"])
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def test_pipeline_dashboard_shows_every_spanline_metric_and_queries_no_other() -> None:
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    families = [
        family for metric in (*RECEIVER_METRICS, *WORKER_METRICS, *ALERTING_METRICS) for family in metric.describe()
    ]
    exposed = {family.name + suffix for family in families for suffix in suffixes[family.type]}
    queried = {name for expr in pipeline_exprs() for name in re.findall(r"\bspanline_[a-z_]+", expr)}
    assert queried <= exposed, f"the dashboard queries metrics nobody exposes: {sorted(queried - exposed)}"
    shown = {family.name for family in families if any(family.name + s in queried for s in suffixes[family.type])}
    assert shown == {family.name for family in families}, "metrics missing from the pipeline dashboard"


def test_pipeline_dashboard_promql_passes_promtool(promtool: str, tmp_path: Path) -> None:
    """promtool parses every query (as recording rules; Grafana's range macros filled in)."""
    grafana_macros = {"$__rate_interval": "1m", "$__range": "1h"}
    rules = []
    for index, expr in enumerate(pipeline_exprs()):
        for macro, value in grafana_macros.items():
            expr = expr.replace(macro, value)
        rules.append({"record": f"spanline:dashboard_query_{index}", "expr": expr})
    rules_file = tmp_path / "queries.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "pipeline-dashboard", "rules": rules}]}))
    checked = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


def test_pipeline_dashboard_reads_the_provisioned_prometheus() -> None:
    board = json.loads(rendered()[f"{PIPELINE_UID}.json"])
    (variable,) = board["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    assert variable["current"]["value"] == PROMETHEUS_UID
    assert all(panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for panel in board["panels"])
    (source,) = yaml.safe_load((PROVISIONING / "datasources" / "spanline-prometheus.yaml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == PROMETHEUS_UID
    assert source["url"] == "${GRAFANA_PROMETHEUS_URL}"
