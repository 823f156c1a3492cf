"""The named analysis queries (sql/queries) against pandas recomputations of the same spans.

Spans come from the workload generator through the worker's own transformation
(process_batch), with a few edits the generator does not produce on its own in half an hour
(a model version change, a shadow route, refusals). Every query runs on the real chDB
engine; each expected answer is computed here from the inserted frame, by the definition in
the query's header, without SQL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from clickhouse_connect.driver.client import Client

from spanline.errors import ConfigError
from spanline.simulator.workload import WorkloadConfig
from spanline.sql.library import QUERIES_DIR, NamedQuery, load_library, parse_query
from tests.support.chdb import migrated_chdb
from tests.support.rows import worker_rows
from tests.support.stored_spans import store_spans

DB = "library"
START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(minutes=20)
DURATION = timedelta(minutes=30)
#: The window most tests query: a strict part of the data, so the time filter matters.
SINCE, UNTIL = START + timedelta(minutes=2), START + timedelta(minutes=28)
NEW_MINI = "gpt-4o-mini-2099-01-01"
EXPECTED_QUERIES = {
    "spend_by_day",
    "cost_pareto",
    "retry_overhead",
    "cache_savings",
    "routing_mix",
    "cost_per_successful_task",
    "prompt_version_comparison",
    "latency_by_stage",
    "error_rates",
    "model_version_changes",
    "tenant_spend_growth",
    "canary_vs_control",
}
TENANTS = ["", "globex"]


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """Half an hour of traffic across midnight UTC, as the worker would write it, plus edits."""
    config = WorkloadConfig(start=START, duration_s=DURATION.total_seconds(), requests_per_s=5)
    out = worker_rows(config)
    llm = out["kind"].eq("llm")
    late = out["start_time"] >= pd.Timestamp(START + timedelta(minutes=20))
    out.loc[llm & late & out["model_response"].eq("gpt-4o-mini-2024-07-18"), "model_response"] = NEW_MINI
    default_chat = np.flatnonzero(llm & out["feature"].eq("support-chat") & out["routing_reason"].eq("default"))
    out.loc[out.index[default_chat[::9]], "routing_reason"] = "shadow"
    refused = np.flatnonzero(llm & out["routing_reason"].isin(["canary", "default"]))[::40]
    out.loc[out.index[refused], ["status", "error_type"]] = ["error", "refusal"]
    return out


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, rows: pd.DataFrame) -> Iterator[Client]:
    with migrated_chdb(tmp_path_factory.mktemp("library") / "chdb", DB) as chdb:
        store_spans(chdb, DB, rows, "library-seed")
        yield chdb


@pytest.fixture(scope="module")
def library() -> dict[str, NamedQuery]:
    return load_library()


def run(client: Client, library: dict[str, NamedQuery], name: str, raw: dict[str, str]) -> pd.DataFrame:
    query = library[name]
    return client.query_df(query.render(DB), parameters=query.bind(raw))


def window_raw(tenant: str, since: datetime = SINCE, until: datetime = UNTIL) -> dict[str, str]:
    return {"since": since.isoformat(), "until": until.isoformat().replace("+00:00", "Z"), "tenant": tenant}


def scoped(rows: pd.DataFrame, tenant: str, since: datetime = SINCE, until: datetime = UNTIL) -> pd.DataFrame:
    start = rows["start_time"]
    keep = (start >= pd.Timestamp(since)) & (start < pd.Timestamp(until))
    return rows[keep & (rows["tenant_id"].eq(tenant) if tenant else True)]


def model_calls(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["model_requested"].ne("")]


def quantile(values: pd.Series, level: float) -> float:
    """PERCENTILE.INC / R7 (numpy's default), the definition of quantileExactInclusive."""
    present = values.dropna().to_numpy(dtype="float64")
    return float(np.quantile(present, level)) if len(present) else math.nan


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame, keys: list[str], ordered: bool = False) -> None:
    """Same columns and rows; numbers within 1e-9 relative, NULL = NaN. Unordered by default."""
    assert list(actual.columns) == list(expected.columns)
    assert len(expected) > 0
    left, right = _normal(actual, expected), _normal(expected, expected)
    if not ordered:
        left = left.sort_values(keys, kind="stable").reset_index(drop=True)
        right = right.sort_values(keys, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=1e-9, atol=1e-12)


def _normal(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for name in frame.columns:
        column, kind = frame[name].reset_index(drop=True), like[name]
        if pd.api.types.is_datetime64_any_dtype(kind):
            stamps = pd.to_datetime(column)
            out[name] = (stamps.dt.tz_convert(None) if stamps.dt.tz else stamps).astype("datetime64[ms]")
        elif pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind):
            out[name] = pd.to_numeric(column).astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
        else:
            out[name] = column.astype(str)
    return pd.DataFrame(out)


def _header(name: str, param: str, condition: str) -> str:
    """A minimal query file with the window and tenant parameters, plus ``param``/``condition``."""
    lines = [
        f"-- name: {name}",
        "-- question: a test query",
        "-- param: since DateTime64(3, 'UTC')",
        "-- param: until DateTime64(3, 'UTC')",
        "-- param: tenant String = ''",
        param,
        "SELECT count() FROM ${database}.spans",
        "WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}",
        "  AND ({tenant:String} = '' OR tenant_id = {tenant:String})",
        condition,
    ]
    return "\n".join(line for line in lines if line)


def test_every_query_file_has_a_header_and_binds_only_declared_parameters(library: dict[str, NamedQuery]) -> None:
    assert set(library) == EXPECTED_QUERIES
    assert {path.stem for path in QUERIES_DIR.glob("*.sql")} == EXPECTED_QUERIES
    for name, query in library.items():
        text = (QUERIES_DIR / f"{name}.sql").read_text(encoding="utf-8")
        assert text.startswith(f"-- name: {name}\n-- question: ")
        assert len(query.question) > 40
        assert {"since", "until", "tenant"} <= query.params.keys()
        body = query.sql.replace("${database}", "")
        assert not re.search(r"%\(?\w*\)?[sdr]|\{\}|\{\d*\}|\{[a-z_]+\}|\$\{|\$[a-z_]", body), name
        assert "FROM library.spans" in query.render(DB)


def test_bind_types_defaults_and_errors(library: dict[str, NamedQuery]) -> None:
    query = library["routing_mix"]
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert query.bind({}, now=now) == {"since": now - timedelta(hours=24), "until": now, "tenant": "", "bucket_s": 3600}
    bound = query.bind({"since": "2026-04-30T10:00:00+02:00", "bucket_s": "60", "tenant": "acme"}, now=now)
    assert bound["since"] == datetime(2026, 4, 30, 8, tzinfo=UTC) and bound["bucket_s"] == 60
    assert library["cost_pareto"].bind({}, now=now)["top_share"] == pytest.approx(0.1)
    with pytest.raises(ConfigError, match=r"no parameter\(s\) bucket.*bucket_s UInt32 = 3600"):
        query.bind({"bucket": "60"})
    with pytest.raises(ConfigError, match="not a valid UInt32"):
        query.bind({"bucket_s": "-5"})
    with pytest.raises(ConfigError, match="not a valid DateTime"):
        query.bind({"since": "yesterday"})
    with pytest.raises(ConfigError, match="must be before until"):
        query.bind({"since": "2026-05-02T00:00:00"}, now=now)
    required = parse_query("needs_k", _header("needs_k", "-- param: k UInt32", "AND {k:UInt32} > 0"))
    with pytest.raises(ConfigError, match=r"needs parameter\(s\) k; its parameters are: .*k UInt32"):
        required.bind({})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (_header("other_name", "", ""), "must start with '-- name: bad'"),
        (_header("bad", "", "AND {k:UInt32} > 0"), r"binds \{k:UInt32\} but declares k as None"),
        (_header("bad", "-- param: k UInt64", "AND {k:UInt32} > 0"), "declares k as UInt64"),
        (_header("bad", "-- param: k UInt32 = 1", ""), "never uses: k"),
        (_header("bad", "-- param: k UInt32 = x", "AND {k:UInt32} > 0"), "not a valid UInt32"),
        (_header("bad", "", "AND x = '${table}'"), r"only \$\{database\} is filled"),
        (_header("bad", "", "").replace("-- question: a test query\n", ""), "one '-- question:' line"),
        (
            _header("bad", "", "").replace("-- param: tenant String = ''\n", "").replace("{tenant:String}", "''"),
            r"must declare the parameter\(s\) tenant",
        ),
    ],
)
def test_header_problems_are_config_errors(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_query("bad", text)


@pytest.mark.parametrize("tenant", TENANTS)
def test_spend_by_day(client: Client, library: dict[str, NamedQuery], rows: pd.DataFrame, tenant: str) -> None:
    calls = model_calls(scoped(rows, tenant))
    day = calls["start_time"].dt.tz_convert(None).dt.floor("D").rename("day")
    expected = (
        calls.assign(day=day, model=calls["model_requested"], unpriced=~calls["cost_known"].astype(bool))
        .groupby(["day", "tenant_id", "feature", "provider", "model"], observed=True)
        .agg(
            calls=("cost_usd", "size"),
            spend_usd=("cost_usd", "sum"),
            input_tokens=("input_tokens", "sum"),
            output_tokens=("output_tokens", "sum"),
            unpriced_calls=("unpriced", "sum"),
        )
        .reset_index()
    )
    actual = run(client, library, "spend_by_day", window_raw(tenant))
    assert_same(actual, expected, ["day", "tenant_id", "feature", "provider", "model"])
    assert actual["day"].nunique() == 2  # the data crosses midnight UTC
    assert set(actual["tenant_id"]) == ({tenant} if tenant else set(rows["tenant_id"]))


@pytest.mark.parametrize("tenant", TENANTS)
def test_cost_pareto(client: Client, library: dict[str, NamedQuery], rows: pd.DataFrame, tenant: str) -> None:
    calls = model_calls(scoped(rows, tenant)).sort_values(["cost_usd", "span_id"], ascending=[False, True])
    total = calls["cost_usd"].sum()
    top = calls.head(math.ceil(0.1 * len(calls)))
    expected = (
        top.groupby(["feature", "prompt_id", "prompt_version"], observed=True)
        .agg(calls=("cost_usd", "size"), spend_usd=("cost_usd", "sum"))
        .reset_index()
        .assign(
            share_of_spend=lambda f: f["spend_usd"] / total,
            top_calls_share_of_spend=top["cost_usd"].sum() / total,
            top_calls=len(top),
            calls_in_window=len(calls),
        )
        .sort_values(["spend_usd", "feature", "prompt_id", "prompt_version"], ascending=[False, True, True, True])
    )
    actual = run(client, library, "cost_pareto", window_raw(tenant))
    assert_same(actual, expected, [], ordered=True)
    assert 0.4 < actual["top_calls_share_of_spend"].iloc[0] < 0.9  # LLM spend is heavy-tailed


@pytest.mark.parametrize("tenant", TENANTS)
def test_retry_overhead(client: Client, library: dict[str, NamedQuery], rows: pd.DataFrame, tenant: str) -> None:
    calls = model_calls(scoped(rows, tenant))
    calls = calls.assign(
        model=calls["model_requested"],
        retry=calls["attempt"] > 0,
        retry_cost=calls["cost_usd"].where(calls["attempt"] > 0, 0.0),
    )
    expected = (
        calls.groupby(["feature", "provider", "model"], observed=True)
        .agg(
            calls=("retry", "size"),
            retries=("retry", "sum"),
            spend_usd=("cost_usd", "sum"),
            retry_cost_usd=("retry_cost", "sum"),
        )
        .reset_index()
    )
    expected["retry_share"] = (expected["retry_cost_usd"] / expected["spend_usd"]).where(expected["spend_usd"] > 0)
    first_attempts = expected["calls"] - expected["retries"]
    expected["retry_amplification"] = (expected["calls"] / first_attempts).where(first_attempts > 0)
    actual = run(client, library, "retry_overhead", window_raw(tenant))
    assert (actual["retry_amplification"] > 1).any()
    assert_same(actual, expected, ["feature", "provider", "model"])
    assert actual["retry_cost_usd"].sum() > 0


@pytest.mark.parametrize("tenant", TENANTS)
def test_cache_savings(client: Client, library: dict[str, NamedQuery], rows: pd.DataFrame, tenant: str) -> None:
    spans = scoped(rows, tenant)
    lookups = spans[spans["kind"].eq("cache") & spans["cache_hit"].notna()]
    avoided = spans[spans["kind"].eq("llm") & spans["status"].eq("ok")].groupby("feature", observed=True)["cost_usd"]
    expected = (
        lookups.assign(hit=lookups["cache_hit"].astype(bool))
        .groupby(["feature", "cache_layer"], observed=True)
        .agg(lookups=("hit", "size"), hits=("hit", "sum"))
        .reset_index()
    )
    expected["hit_rate"] = expected["hits"] / expected["lookups"]
    expected["mean_call_cost_usd"] = expected["feature"].map(avoided.mean()).fillna(0.0)
    expected["saved_usd"] = expected["hits"] * expected["mean_call_cost_usd"]
    actual = run(client, library, "cache_savings", window_raw(tenant))
    assert_same(actual, expected, ["feature", "cache_layer"])
    assert actual["saved_usd"].sum() > 0


@pytest.mark.parametrize("tenant", TENANTS)
def test_routing_mix(client: Client, library: dict[str, NamedQuery], rows: pd.DataFrame, tenant: str) -> None:
    calls = scoped(rows, tenant)
    calls = calls[calls["kind"].eq("llm")]
    keys = ["bucket", "route", "model_tier", "routing_reason", "model"]
    expected = (
        calls.assign(bucket=calls["start_time"].dt.tz_convert(None).dt.floor("600s"), model=calls["model_requested"])
        .groupby(keys, observed=True)
        .agg(calls=("cost_usd", "size"), spend_usd=("cost_usd", "sum"))
        .reset_index()
    )
    per_bucket = expected.groupby("bucket")[["calls", "spend_usd"]].transform("sum")
    expected["share_of_calls"] = expected["calls"] / per_bucket["calls"]
    expected["share_of_cost"] = expected["spend_usd"] / per_bucket["spend_usd"]
    actual = run(client, library, "routing_mix", {**window_raw(tenant), "bucket_s": "600"})
    assert_same(actual, expected, keys)
    assert actual["bucket"].nunique() == 3  # 23:42 to 00:08 lies in three 10-minute buckets


@pytest.mark.parametrize("tenant", TENANTS)
def test_cost_per_successful_task(
    client: Client, library: dict[str, NamedQuery], rows: pd.DataFrame, tenant: str
) -> None:
    spans = scoped(rows, tenant)
    roots = spans[spans["kind"].eq("request") & spans["parent_span_id"].eq("")]
    later = scoped(rows, tenant, SINCE, START + timedelta(days=1))
    costs = later.groupby(["tenant_id", "trace_id"], observed=True)["cost_usd"].sum().rename("trace_cost").reset_index()
    tasks = roots.merge(costs, on=["tenant_id", "trace_id"], how="left").fillna({"trace_cost": 0.0})
    tasks = tasks.assign(ok=tasks["status"].eq("ok"), ok_cost=tasks["trace_cost"].where(tasks["status"].eq("ok"), 0.0))
    expected = (
        tasks.groupby("feature", observed=True)
        .agg(
            tasks=("ok", "size"),
            successful_tasks=("ok", "sum"),
            successful_cost_usd=("ok_cost", "sum"),
            total_cost_usd=("trace_cost", "sum"),
        )
        .reset_index()
    )
    expected.insert(3, "success_rate", expected["successful_tasks"] / expected["tasks"])
    succeeded = expected["successful_tasks"].where(expected["successful_tasks"] > 0)
    expected["cost_per_successful_task"] = expected["successful_cost_usd"] / succeeded
    expected["all_in_cost_per_success"] = expected["total_cost_usd"] / succeeded
    actual = run(client, library, "cost_per_successful_task", window_raw(tenant))
    assert_same(actual, expected, ["feature"])
    assert (actual["successful_tasks"] <= actual["tasks"]).all() and actual["cost_per_successful_task"].gt(0).all()


@pytest.mark.parametrize("tenant", TENANTS)
def test_prompt_version_comparison(
    client: Client, library: dict[str, NamedQuery], rows: pd.DataFrame, tenant: str
) -> None:
    spans = scoped(rows, tenant)
    calls = spans[spans["kind"].eq("llm") & spans["prompt_id"].ne("")]
    versions = ["prompt_id", "prompt_version"]
    first = (
        calls.sort_values(["start_time", "span_id"])
        .groupby(["tenant_id", "trace_id"], observed=True)[versions]
        .first()
        .reset_index()
    )
    evals = spans[spans["kind"].eq("eval") & spans["eval_passed"].notna()]
    judged = (
        first.merge(evals[["tenant_id", "trace_id", "eval_passed"]], on=["tenant_id", "trace_id"])
        .assign(passed=lambda f: f["eval_passed"].astype(bool))
        .groupby(versions, observed=True)
        .agg(evals=("passed", "size"), passed=("passed", "sum"))
    )
    grouped = calls.assign(trace=calls["tenant_id"].astype(str) + "/" + calls["trace_id"]).groupby(
        versions, observed=True
    )
    expected = grouped.agg(
        llm_calls=("cost_usd", "size"), traces=("trace", "nunique"), spend_usd=("cost_usd", "sum")
    ).reset_index()
    expected["cost_per_call_usd"] = expected["spend_usd"] / expected["llm_calls"]
    expected["cost_per_trace_usd"] = expected["spend_usd"] / expected["traces"]
    expected["p50_ms"] = grouped["duration_ms"].apply(lambda d: quantile(d, 0.5)).to_numpy()
    expected["p95_ms"] = grouped["duration_ms"].apply(lambda d: quantile(d, 0.95)).to_numpy()
    expected = expected.merge(judged.reset_index(), on=versions, how="left")
    expected["eval_pass_rate"] = expected.pop("passed") / expected["evals"]
    actual = run(client, library, "prompt_version_comparison", window_raw(tenant))
    assert_same(actual, expected, versions)
    assert actual["evals"].notna().any()


@pytest.mark.parametrize("tenant", TENANTS)
def test_latency_by_stage(client: Client, library: dict[str, NamedQuery], rows: pd.DataFrame, tenant: str) -> None:
    spans = scoped(rows, tenant)
    grouped = spans.assign(model=spans["model_requested"]).groupby(["kind", "model"], observed=True)
    expected = grouped.size().rename("spans").reset_index()
    for column, prefix in (("duration_ms", ""), ("ttft_ms", "ttft_")):
        for level, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            expected[f"{prefix}{label}_ms"] = grouped[column].apply(lambda d, q=level: quantile(d, q)).to_numpy()
    actual = run(client, library, "latency_by_stage", window_raw(tenant))
    assert_same(actual, expected, ["kind", "model"])
    assert actual["ttft_p95_ms"].notna().any() and actual["ttft_p95_ms"].isna().any()


@pytest.mark.parametrize("tenant", TENANTS)
def test_error_rates(client: Client, library: dict[str, NamedQuery], rows: pd.DataFrame, tenant: str) -> None:
    calls = model_calls(scoped(rows, tenant))
    flags = calls.assign(
        error=calls["status"].eq("error"),
        limited=calls["http_status"].eq(429) | calls["error_type"].eq("rate_limited"),
        timeout=calls["error_type"].eq("timeout"),
        server=calls["error_type"].eq("server_error"),
    )
    expected = (
        flags.groupby(["provider", "endpoint"], observed=True)
        .agg(
            calls=("error", "size"),
            errors=("error", "sum"),
            rate_limited=("limited", "sum"),
            timeouts=("timeout", "sum"),
            server_errors=("server", "sum"),
        )
        .reset_index()
    )
    expected.insert(4, "error_rate", expected["errors"] / expected["calls"])
    expected.insert(6, "rate_limited_rate", expected["rate_limited"] / expected["calls"])
    actual = run(client, library, "error_rates", window_raw(tenant))
    assert_same(actual, expected, ["provider", "endpoint"])
    assert actual["rate_limited"].sum() > 0


@pytest.mark.parametrize("tenant", TENANTS)
def test_model_version_changes(client: Client, library: dict[str, NamedQuery], rows: pd.DataFrame, tenant: str) -> None:
    calls = model_calls(scoped(rows, tenant))
    calls = calls[calls["model_response"].ne("")]
    expected = (
        calls.assign(model=calls["model_requested"])
        .groupby(["provider", "model", "model_response"], observed=True)
        .agg(first_seen=("start_time", "min"), last_seen=("start_time", "max"), calls=("start_time", "size"))
        .reset_index()
        .sort_values(["provider", "model", "first_seen", "model_response"])
    )
    expected["previous_response"] = expected.groupby(["provider", "model"])["model_response"].shift(1).fillna("")
    actual = run(client, library, "model_version_changes", window_raw(tenant))
    assert_same(actual, expected, [], ordered=True)
    change = actual[actual["model_response"].eq(NEW_MINI)]
    assert change["previous_response"].tolist() == ["gpt-4o-mini-2024-07-18"]


@pytest.mark.parametrize("tenant", TENANTS)
def test_tenant_spend_growth(client: Client, library: dict[str, NamedQuery], rows: pd.DataFrame, tenant: str) -> None:
    half = DURATION / 2
    since, until = START + half, START + DURATION
    current = scoped(rows, tenant, since, until).groupby("tenant_id", observed=True)["cost_usd"].sum()
    previous = scoped(rows, tenant, START, since).groupby("tenant_id", observed=True)["cost_usd"].sum()
    expected = pd.DataFrame({"spend_usd": current, "previous_spend_usd": previous}).fillna(0.0)
    expected = expected.rename_axis("tenant_id").reset_index()
    expected["growth_usd"] = expected["spend_usd"] - expected["previous_spend_usd"]
    expected["growth_ratio"] = (expected["spend_usd"] / expected["previous_spend_usd"] - 1).where(
        expected["previous_spend_usd"] > 0
    )
    expected = expected.sort_values(["growth_usd", "tenant_id"], ascending=[False, True]).head(2)
    actual = run(client, library, "tenant_spend_growth", {**window_raw(tenant, since, until), "limit": "2"})
    assert_same(actual, expected, [], ordered=True)
    assert len(actual) == (1 if tenant else 2)


@pytest.mark.parametrize("tenant", TENANTS)
def test_canary_vs_control(client: Client, library: dict[str, NamedQuery], rows: pd.DataFrame, tenant: str) -> None:
    spans = scoped(rows, tenant)
    calls = spans[spans["kind"].eq("llm") & spans["routing_reason"].isin(["default", "canary", "shadow"])]
    calls = calls.assign(
        arm=calls["routing_reason"].astype(str),
        refused=calls["error_type"].eq("refusal") | calls["finish_reason"].eq("refusal"),
    )
    grouped = calls.groupby(["feature", "arm"], observed=True)
    arms = grouped.agg(
        llm_calls=("cost_usd", "size"), cost_per_call_usd=("cost_usd", "mean"), refusal_rate=("refused", "mean")
    ).reset_index()
    arms["p95_ms"] = grouped["duration_ms"].apply(lambda d: quantile(d, 0.95)).to_numpy()
    traces = (
        calls.groupby(["tenant_id", "trace_id"], observed=True)
        .agg(feature=("feature", "first"), arms=("arm", lambda a: set(a)))
        .reset_index()
    )
    traces["arm"] = [("canary" if "canary" in a else "shadow" if "shadow" in a else "default") for a in traces["arms"]]
    evals = spans[spans["kind"].eq("eval") & spans["eval_passed"].notna()]
    judged = (
        traces.merge(evals[["tenant_id", "trace_id", "eval_passed"]], on=["tenant_id", "trace_id"])
        .assign(passed=lambda f: f["eval_passed"].astype(bool))
        .groupby(["feature", "arm"], observed=True)
        .agg(evals=("passed", "size"), passed=("passed", "sum"))
    )
    control = arms[arms["arm"].eq("default")].set_index("feature")
    tried = arms.loc[arms["arm"].isin(["canary", "shadow"]), "feature"]
    out = arms[arms["feature"].isin(tried)].merge(judged.reset_index(), on=["feature", "arm"], how="left")
    base = out["feature"].map
    expected = pd.DataFrame(
        {
            "feature": out["feature"],
            "arm": out["arm"],
            "llm_calls": out["llm_calls"],
            "cost_per_call_usd": out["cost_per_call_usd"],
            "cost_delta_usd": out["cost_per_call_usd"] - base(control["cost_per_call_usd"]),
            "cost_delta_ratio": out["cost_per_call_usd"] / base(control["cost_per_call_usd"]) - 1,
            "p95_ms": out["p95_ms"],
            "p95_delta_ms": out["p95_ms"] - base(control["p95_ms"]),
            "refusal_rate": out["refusal_rate"],
            "refusal_rate_delta": out["refusal_rate"] - base(control["refusal_rate"]),
            "evals": out["evals"],
            "eval_pass_rate": out["passed"] / out["evals"],
        }
    )
    actual = run(client, library, "canary_vs_control", window_raw(tenant))
    assert_same(actual, expected, ["feature", "arm"])
    if not tenant:
        assert set(actual["arm"]) == {"canary", "shadow", "default"}
        assert actual["refusal_rate"].gt(0).any()
