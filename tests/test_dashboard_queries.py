"""Every dashboard panel's query, expanded as grafana-clickhouse-datasource expands it, run on
chDB against spans from the real pipeline (workload generator -> the worker's process_batch ->
spans and the rollups the materialized views fill), and checked against the SQL library.

Windows: a raw-span panel filters ``$__timeFilter(start_time)``, i.e. [from, to] with both ends
inclusive at second precision, so its library twin runs on [from, to + 1 ms); a minute-rollup
panel filters ``$__timeFilter(minute)``, which includes the minute starting at ``to``, so its
twin runs on [from, to + 1 min).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from clickhouse_connect.driver.client import Client

from spanline.contracts import load_contracts
from spanline.dashboards.catalog import ANNOTATIONS, VARIABLES, build_dashboards
from spanline.dashboards.macros import ALL, TimeRange, Variable, expand
from spanline.dashboards.model import Panel, with_database
from spanline.dashboards.thresholds import daily_budgets
from spanline.simulator.workload import WorkloadConfig
from spanline.sql.library import NamedQuery, load_library
from tests.support.chdb import migrated_chdb
from tests.support.rows import worker_rows
from tests.support.stored_spans import store_spans

DB = "dash"
START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(minutes=20)
FROM, TO = START + timedelta(minutes=2), START + timedelta(minutes=27)
RAW_UNTIL, ROLLUP_UNTIL = TO + timedelta(milliseconds=1), TO + timedelta(minutes=1)
NEW_MINI = "gpt-4o-mini-2099-01-01"
DASHBOARDS = build_dashboards(load_contracts())
PANELS = {f"{d.uid}/{p.title}": p for d in DASHBOARDS for p in d.panels}


def seeded_spans(start: datetime = START, minutes: float = 30, rate: float = 5) -> pd.DataFrame:
    """Spans as the worker writes them, plus what the generator does not produce on its own in
    half an hour: a silent model version change, refusals and an embedding-model mismatch."""
    config = WorkloadConfig(start=start, duration_s=minutes * 60, requests_per_s=rate)
    out = worker_rows(config)
    llm = out["kind"].eq("llm")
    late = out["start_time"] >= pd.Timestamp(start + timedelta(minutes=minutes * 2 / 3))
    out.loc[llm & late & out["model_response"].eq("gpt-4o-mini-2024-07-18"), "model_response"] = NEW_MINI
    refused = np.flatnonzero(llm & out["status"].eq("ok"))[::40]
    out.loc[out.index[refused], ["status", "error_type"]] = ["error", "refusal"]
    retrievals = np.flatnonzero(out["kind"].eq("retrieval") & out["index_embedding_model"].ne(""))[::25]
    out.loc[out.index[retrievals], "index_embedding_model"] = "text-embedding-ada-002"
    return out


def seeded_alerts(start: datetime = START) -> pd.DataFrame:
    """Alert history as sql/migrations/0005_alerts.sql defines it: one incident resolved, two still firing."""
    at = [start + timedelta(minutes=m) for m in (5, 9, 12, 20)]
    rows = [
        ("error_rate", "high", "firing", "error_rate/acme", "acme", 0.14, 0.10, "provider-outage", "provider"),
        ("error_rate", "high", "resolved", "error_rate/acme", "acme", 0.04, 0.10, "provider-outage", "provider"),
        ("cost_spike", "critical", "firing", "cost_spike/globex", "globex", 9.1, 3.0, "cost-spike", "routing mix"),
        ("rate_limiting", "medium", "firing", "rate_limiting/acme", "acme", 0.031, 0.02, "rate-limits", "quota"),
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "rule",
            "severity",
            "state",
            "dedup_key",
            "tenant_id",
            "value",
            "threshold",
            "runbook",
            "runbook_branch",
        ],
    )
    frame.insert(0, "at", pd.to_datetime(at, utc=True))
    frame.insert(1, "recorded_at", frame["at"] + pd.Timedelta(seconds=2))
    frame["scope"] = [{"tenant_id": t} for t in frame["tenant_id"]]
    frame["summary"] = frame["rule"] + " " + frame["state"] + " for " + frame["tenant_id"]
    frame["diagnosis"] = '{"branch": "' + frame["runbook_branch"] + '"}'
    return frame


def seed(client: Client, database: str, spans: pd.DataFrame) -> None:
    """Insert the spans and the alert history into a migrated database."""
    store_spans(client, database, spans, "dashboards-seed")
    alerts = seeded_alerts(spans["start_time"].min().to_pydatetime())
    # as the alert worker stores them (alerts/examples.py): a few traces of the incident's tenant
    alerts["example_trace_ids"] = [
        list(spans.loc[spans["tenant_id"].eq(t), "trace_id"].unique()[:3]) for t in alerts["tenant_id"]
    ]
    client.insert_df(f"{database}.alerts", alerts)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return seeded_spans()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, rows: pd.DataFrame) -> Iterator[Client]:
    with migrated_chdb(tmp_path_factory.mktemp("dashboards") / "chdb", DB) as chdb:
        seed(chdb, DB, rows)
        yield chdb


@pytest.fixture(scope="module")
def library() -> dict[str, NamedQuery]:
    return load_library()


@pytest.fixture(scope="module")
def options(client: Client) -> dict[str, list[str]]:
    """What each variable's own query offers (All stands for these)."""
    return {v.name: [row[0] for row in client.query(with_database(v.sql, DB)).result_rows] for v in VARIABLES}


def selection(options: dict[str, list[str]], **chosen: list[str]) -> list[Variable]:
    return [Variable(name, chosen.get(name, [ALL]), values) for name, values in options.items()]


def panel_frame(
    client: Client,
    sql: str,
    variables: list[Variable],
    interval: timedelta = timedelta(minutes=1),
    start: datetime = FROM,
    end: datetime = TO,
) -> pd.DataFrame:
    return client.query_df(expand(with_database(sql, DB), TimeRange(start, end, interval), variables))


def library_frame(
    client: Client, library: dict[str, NamedQuery], name: str, until: datetime, since: datetime = FROM, **params: str
) -> pd.DataFrame:
    query = library[name]
    raw = {"since": since.isoformat(), "until": until.isoformat(), "tenant": params.pop("tenant", ""), **params}
    return client.query_df(query.render(DB), parameters=query.bind(raw))


def panel(title: str) -> Panel:
    matches = [p for key, p in PANELS.items() if key.endswith("/" + title)]
    assert len(matches) == 1, title
    return matches[0]


def number(frame: pd.DataFrame, column: str) -> float:
    assert len(frame) == 1, frame
    return float(frame[column].iloc[0])


SELECTIONS = {
    "all": {},
    "one-tenant": {"tenant": ["globex"]},
    "tenants-and-features": {"tenant": ["acme", "globex"], "feature": ["support-chat", "code-agent", "doc-search"]},
}


def test_the_five_dashboards_have_the_issue_panels() -> None:
    assert [d.uid for d in DASHBOARDS] == [
        "spanline-executive",
        "spanline-oncall",
        "spanline-engineering",
        "spanline-cost",
        "spanline-quality",
    ]
    assert len(PANELS) == sum(len(d.panels) for d in DASHBOARDS) >= 40
    for key, spec in PANELS.items():
        assert len(spec.description) > 30, key
        assert spec.unit, key


@pytest.mark.parametrize("chosen", SELECTIONS.values(), ids=SELECTIONS.keys())
@pytest.mark.parametrize("key", PANELS.keys())
def test_panel_query_returns_typed_rows(
    client: Client, options: dict[str, list[str]], key: str, chosen: dict[str, list[str]]
) -> None:
    spec = PANELS[key]
    frame = panel_frame(client, spec.sql, selection(options, **chosen))
    assert len(frame) > 0, f"{key} returned no rows"
    numeric = [
        c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    ]
    assert numeric, f"{key} has no numeric column: {frame.dtypes.to_dict()}"
    if spec.kind == "timeseries":
        assert frame.columns[0] == "time" and pd.api.types.is_datetime64_any_dtype(frame["time"]), key
        assert frame["time"].is_monotonic_increasing, key
        assert frame[numeric].notna().any().all(), key
    elif spec.kind == "stat":
        assert len(frame) == 1 and all(math.isfinite(float(frame[c].iloc[0])) for c in numeric), (key, frame)
    else:
        assert frame[numeric].notna().any().any(), key


@pytest.mark.parametrize("chosen", SELECTIONS.values(), ids=SELECTIONS.keys())
def test_variables_filter_what_they_select(
    client: Client, options: dict[str, list[str]], chosen: dict[str, list[str]]
) -> None:
    frame = panel_frame(client, panel("Spend by tenant").sql, selection(options, **chosen))
    assert set(frame["tenant_id"]) == set(chosen.get("tenant", options["tenant"]))
    features = panel_frame(client, panel("Spend by feature").sql, selection(options, **chosen))
    assert set(features["feature"]) == set(chosen.get("feature", options["feature"]))


def test_variable_queries_offer_the_seeded_values(options: dict[str, list[str]], rows: pd.DataFrame) -> None:
    assert options["tenant"] == sorted(rows["tenant_id"].unique())
    assert options["feature"] == sorted(rows["feature"].unique())
    assert options["model"] == sorted(rows.loc[rows["model_requested"].ne(""), "model_requested"].unique())


@pytest.mark.parametrize("tenant", ["", "globex"])
def test_spend_matches_spend_by_day(
    client: Client, library: dict[str, NamedQuery], options: dict[str, list[str]], tenant: str
) -> None:
    variables = selection(options, **({"tenant": [tenant]} if tenant else {}))
    expected = library_frame(client, library, "spend_by_day", ROLLUP_UNTIL, tenant=tenant)
    assert number(panel_frame(client, panel("Spend in range").sql, variables), "spend_usd") == pytest.approx(
        expected["spend_usd"].sum(), rel=1e-9
    )
    by_model = panel_frame(client, panel("Spend by model").sql, variables).set_index("model_requested")["spend_usd"]
    pd.testing.assert_series_equal(
        by_model.sort_index(), expected.groupby("model")["spend_usd"].sum().sort_index(), check_names=False, rtol=1e-9
    )


def test_budget_and_forecast_follow_spend_by_day(
    client: Client, library: dict[str, NamedQuery], options: dict[str, list[str]]
) -> None:
    variables = selection(options)
    spend = library_frame(client, library, "spend_by_day", ROLLUP_UNTIL)
    budgets = daily_budgets(load_contracts())
    range_days = (TO - FROM).total_seconds() / 86400
    budget_used = number(panel_frame(client, panel("Budget used (prorated)").sql, variables), "budget_used")
    assert budget_used == pytest.approx(
        spend.loc[spend["tenant_id"].isin(budgets), "spend_usd"].sum() / (sum(budgets.values()) * range_days), rel=1e-9
    )

    pace = panel_frame(client, panel("Spend vs budget pace").sql, variables)
    assert pace["cumulative_spend_usd"].iloc[-1] == pytest.approx(
        spend.loc[spend["tenant_id"].isin(budgets), "spend_usd"].sum(), rel=1e-9
    )
    assert pace["cumulative_spend_usd"].is_monotonic_increasing
    elapsed_s = (pace["time"].dt.tz_localize(None) - pd.Timestamp(FROM).tz_localize(None)).dt.total_seconds() + 60
    np.testing.assert_allclose(pace["budget_pace_usd"], sum(budgets.values()) * elapsed_s / 86400, rtol=1e-9)

    month_start = TO.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month_end = (month_start + timedelta(days=32)).replace(day=1)
    to_hour_end = TO.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    month_to_date = library_frame(client, library, "spend_by_day", to_hour_end, since=month_start)["spend_usd"].sum()
    expected = month_to_date + spend["spend_usd"].sum() / range_days * (month_end - TO).total_seconds() / 86400
    forecast = number(panel_frame(client, panel("Forecast to month end").sql, variables), "forecast_usd")
    assert forecast == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("tenant", ["", "acme"])
def test_error_figures_match_error_rates(
    client: Client, library: dict[str, NamedQuery], options: dict[str, list[str]], tenant: str
) -> None:
    variables = selection(options, **({"tenant": [tenant]} if tenant else {}))
    expected = library_frame(client, library, "error_rates", RAW_UNTIL, tenant=tenant)
    table = panel_frame(client, panel("Failing providers and endpoints").sql, variables)
    pd.testing.assert_frame_equal(table.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False)
    rollup = library_frame(client, library, "error_rates", ROLLUP_UNTIL, tenant=tenant)
    health = number(panel_frame(client, panel("Health: model-call error rate").sql, variables), "error_rate")
    assert health == pytest.approx(rollup["errors"].sum() / rollup["calls"].sum(), rel=1e-9)


def test_per_interval_rates_match_the_library_on_each_minute(
    client: Client, library: dict[str, NamedQuery], options: dict[str, list[str]]
) -> None:
    variables = selection(options)
    rates = panel_frame(client, panel("Error and 429 rates").sql, variables).set_index("time")
    amplification = panel_frame(client, panel("Retry amplification").sql, variables).set_index("time")
    assert len(rates) == len(amplification) == 26
    for minute in list(rates.index[::6]):
        start = minute.to_pydatetime().replace(tzinfo=UTC)
        errors = library_frame(client, library, "error_rates", start + timedelta(minutes=1), since=start)
        retries = library_frame(client, library, "retry_overhead", start + timedelta(minutes=1), since=start)
        assert rates.loc[minute, "error_rate"] == pytest.approx(errors["errors"].sum() / errors["calls"].sum())
        assert rates.loc[minute, "rate_limited_rate"] == pytest.approx(
            errors["rate_limited"].sum() / errors["calls"].sum()
        )
        calls, retried = retries["calls"].sum(), retries["retries"].sum()
        assert amplification.loc[minute, "retry_amplification"] == pytest.approx(calls / (calls - retried))


def test_latency_matches_latency_by_stage(
    client: Client, library: dict[str, NamedQuery], options: dict[str, list[str]]
) -> None:
    variables = selection(options)
    table = panel_frame(client, panel("Latency by stage").sql, variables)
    expected = library_frame(client, library, "latency_by_stage", RAW_UNTIL)
    columns = ["kind", "model", "spans", "p50_ms", "p95_ms", "p99_ms", "ttft_p95_ms"]
    pd.testing.assert_frame_equal(table[columns], expected[columns], check_dtype=False)
    exact = library_frame(client, library, "latency_by_stage", ROLLUP_UNTIL).set_index(["kind", "model"])
    sketch = number(panel_frame(client, panel("Health: p95 request latency").sql, variables), "p95_ms")
    assert sketch == pytest.approx(exact.loc[("request", ""), "p95_ms"], rel=0.03)  # DDSketch: 1% + rank rounding
    llm = panel_frame(client, panel("LLM call latency p50 / p95 / p99").sql, variables)
    assert (llm["p50_ms"] <= llm["p95_ms"]).all() and (llm["p95_ms"] <= llm["p99_ms"]).all()


@pytest.mark.parametrize("tenant", ["", "initech"])
def test_cache_panels_match_cache_savings(
    client: Client, library: dict[str, NamedQuery], options: dict[str, list[str]], tenant: str
) -> None:
    variables = selection(options, **({"tenant": [tenant]} if tenant else {}))
    expected = library_frame(client, library, "cache_savings", RAW_UNTIL, tenant=tenant)
    table = panel_frame(client, panel("Cache savings").sql, variables)
    columns = ["feature", "cache_layer", "lookups", "hits", "hit_rate", "saved_usd"]
    pd.testing.assert_frame_equal(table[columns], expected[columns], check_dtype=False)
    layers = panel_frame(client, panel("Cache hit rate by layer").sql, variables).set_index("cache_layer")["hit_rate"]
    rollup = library_frame(client, library, "cache_savings", ROLLUP_UNTIL, tenant=tenant)
    per_layer = rollup.groupby("cache_layer")[["hits", "lookups"]].sum()
    pd.testing.assert_series_equal(layers, per_layer["hits"] / per_layer["lookups"], check_names=False)


def test_routing_mix_matches_the_library(
    client: Client, library: dict[str, NamedQuery], options: dict[str, list[str]]
) -> None:
    mix = panel_frame(client, panel("Routing mix").sql, selection(options))
    expected = library_frame(client, library, "routing_mix", RAW_UNTIL, bucket_s="60")
    expected["route_class"] = expected["model_tier"] + " / " + expected["routing_reason"]
    expected = expected.groupby(["bucket", "route_class"], as_index=False)["share_of_calls"].sum()
    merged = mix.merge(expected, left_on=["time", "route_class"], right_on=["bucket", "route_class"], how="outer")
    assert len(merged) == len(mix) == len(expected)
    np.testing.assert_allclose(merged["share_of_calls_x"], merged["share_of_calls_y"], rtol=1e-9)


@pytest.mark.parametrize("tenant", ["", "acme"])
def test_cost_tables_match_the_library(
    client: Client, library: dict[str, NamedQuery], options: dict[str, list[str]], tenant: str
) -> None:
    variables = selection(options, **({"tenant": [tenant]} if tenant else {}))
    tasks = panel_frame(client, panel("Cost per successful task").sql, variables)
    expected = library_frame(client, library, "cost_per_successful_task", RAW_UNTIL, tenant=tenant)
    columns = [
        "feature",
        "tasks",
        "successful_tasks",
        "success_rate",
        "cost_per_successful_task",
        "all_in_cost_per_success",
    ]
    pd.testing.assert_frame_equal(tasks[columns], expected[columns], check_dtype=False)

    pareto = library_frame(client, library, "cost_pareto", RAW_UNTIL, tenant=tenant, top_share="0.1")
    top = panel_frame(client, panel("Pareto: features and prompts of the top 10% of calls").sql, variables)
    columns = ["feature", "prompt_id", "prompt_version", "calls", "spend_usd", "share_of_spend"]
    pd.testing.assert_frame_equal(top[columns], pareto[columns].head(20), check_dtype=False)
    share = number(panel_frame(client, panel("Top 10% of calls: share of spend").sql, variables), "top_10pct_share")
    assert share == pytest.approx(pareto["top_calls_share_of_spend"].iloc[0], rel=1e-9)

    prompts = panel_frame(client, panel("Spend by prompt version").sql, variables)
    versions = library_frame(client, library, "prompt_version_comparison", RAW_UNTIL, tenant=tenant)
    columns = ["prompt_id", "prompt_version", "llm_calls", "spend_usd", "cost_per_call_usd"]
    pd.testing.assert_frame_equal(prompts[columns], versions[columns], check_dtype=False)


def test_model_versions_and_their_annotation_match_the_library(
    client: Client, library: dict[str, NamedQuery], options: dict[str, list[str]]
) -> None:
    variables = selection(options)
    expected = library_frame(client, library, "model_version_changes", RAW_UNTIL)
    table = panel_frame(client, panel("Model versions seen").sql, variables)
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    changes = expected[expected["previous_response"].ne("")]
    assert NEW_MINI in set(changes["model_response"])
    annotation = panel_frame(client, ANNOTATIONS[1].sql, variables)
    assert list(annotation.columns) == ["time", "text", "tags"]
    assert len(annotation) == len(changes)
    assert sorted(annotation["time"]) == sorted(changes["first_seen"])
    assert any(NEW_MINI in text for text in annotation["text"])


def test_alert_panels_show_open_incidents_and_history(client: Client, options: dict[str, list[str]]) -> None:
    variables = selection(options)
    active = panel_frame(client, panel("Active alerts").sql, variables)
    assert list(active["rule"]) == ["cost_spike", "rate_limiting"]  # critical first; error_rate was resolved
    examples = client.query_df(
        f"SELECT dedup_key, example_trace_ids[1] AS worst FROM {DB}.alerts WHERE state = 'firing'"
    )
    worst = dict(zip(examples["dedup_key"], examples["worst"], strict=True))
    assert list(active["trace_id"]) == [worst["cost_spike/globex"], worst["rate_limiting/acme"]]
    assert number(panel_frame(client, panel("Health: active alerts").sql, variables), "active_alerts") == 2
    acme = panel_frame(client, panel("Active alerts").sql, selection(options, tenant=["acme"]))
    assert list(acme["rule"]) == ["rate_limiting"]
    history = panel_frame(client, ANNOTATIONS[0].sql, variables)
    assert list(history.columns) == ["time", "title", "text", "tags"] and len(history) == 4
    assert history["title"].iloc[0] == "HIGH error_rate firing"


def test_quality_panels_count_what_they_say(client: Client, options: dict[str, list[str]], rows: pd.DataFrame) -> None:
    variables = selection(options)
    window = rows[(rows["start_time"] >= pd.Timestamp(FROM)) & (rows["start_time"] <= pd.Timestamp(TO))]
    embeddings = panel_frame(client, panel("Embedding versions").sql, variables)
    with_models = window[window["embedding_model"].ne("") & window["index_embedding_model"].ne("")]
    assert embeddings["spans"].sum() == len(with_models)
    mismatched = with_models["embedding_model"] != with_models["index_embedding_model"]
    assert embeddings.loc[embeddings["mismatched"].astype(bool), "spans"].sum() == mismatched.sum() > 0
    rates = panel_frame(client, panel("Hallucination and refusal rates").sql, variables).set_index("time")
    recall = panel_frame(client, panel("Recall@k on retrieval canaries").sql, variables).set_index("time")
    minutes = rows.assign(time=rows["start_time"].dt.floor("min"))
    minutes = minutes[(minutes["time"] >= pd.Timestamp(FROM)) & (minutes["time"] <= pd.Timestamp(TO))]
    llm = minutes[minutes["kind"].eq("llm")]
    refusals = llm["error_type"].eq("refusal").groupby(llm["time"]).mean()
    judged = minutes[
        minutes["kind"].eq("eval") & minutes["eval_name"].isin(["faithfulness", "hallucination", "groundedness"])
    ]
    hallucinations = judged["eval_passed"].eq(False).groupby(judged["time"]).mean()
    canaries = minutes[minutes["kind"].eq("eval") & minutes["eval_name"].str.startswith("recall@")]
    recall_means = canaries.groupby("time")["eval_score"].mean()
    for expected, actual in (
        (refusals, rates["refusal_rate"]),
        (hallucinations, rates["hallucination_rate"]),
        (recall_means, recall["recall"]),
    ):
        actual = actual.dropna()
        actual.index = actual.index.tz_localize(None) if actual.index.tz else actual.index
        expected.index = expected.index.tz_localize(None) if expected.index.tz else expected.index
        pd.testing.assert_series_equal(
            actual.sort_index().astype("float64"),
            expected.sort_index().astype("float64"),
            check_names=False,
            check_index_type=False,
            check_freq=False,
            rtol=1e-9,
        )
    assert (rates["refusal_rate"] > 0).any()
