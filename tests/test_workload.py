"""The simulated workload: schema-valid spans, sound traces, realistic rates, priceable models."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import orjson
import pandas as pd
import pytest
from genai_prices import Usage, calc_price
from pydantic import TypeAdapter

from spanline.contract.schema import Span
from spanline.simulator.scenarios import get_scenario
from spanline.simulator.workload import WorkloadConfig, generate_traces, summarize
from spanline.simulator.workload_arrivals import diurnal_factor
from spanline.simulator.workload_catalog import CLIENT_TIMEOUT_MS

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
# ~28k requests (≈165k spans): enough for rate bands of a few percent to be tight.
BIG = WorkloadConfig(seed=11, start=NOON, duration_s=500, requests_per_s=40.0)
NATIVE = {str, int, float, bool, list, dict, type(None)}


@pytest.fixture(scope="module")
def chunks() -> list[list[dict[str, object]]]:
    return list(generate_traces(BIG))


@pytest.fixture(scope="module")
def spans(chunks: list[list[dict[str, object]]]) -> list[dict[str, object]]:
    return [span for chunk in chunks for span in chunk]


@pytest.fixture(scope="module")
def frame(spans: list[dict[str, object]]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(spans)
    df["start"] = pd.to_datetime(df["start_time"], format="ISO8601", utc=True)
    df["end"] = df["start"] + pd.to_timedelta(df["duration_ms"], unit="ms")
    return df


def test_every_span_validates_and_serialises(spans: list[dict[str, object]]) -> None:
    assert len(spans) > 100_000
    validated = TypeAdapter(list[Span]).validate_python(spans)
    assert len(validated) == len(spans)
    assert {type(value) for span in spans for value in span.values()} <= NATIVE
    assert len(orjson.loads(orjson.dumps(spans))) == len(spans)
    assert all(span["tenant_id"] in BIG.tenants for span in spans)


def test_times_are_rfc3339_milliseconds_with_duration(frame: pd.DataFrame) -> None:
    assert frame["start_time"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").all()
    assert "end_time" not in frame
    assert (frame["duration_ms"] >= 0).all()
    assert frame["start"].min() >= NOON
    assert frame.loc[frame["kind"] == "request", "start"].max() < NOON + timedelta(seconds=BIG.duration_s)
    streamed = frame[frame["ttft_ms"].notna()]
    assert len(streamed) > 10_000
    assert (streamed["duration_ms"] >= streamed["ttft_ms"]).all()


def test_trace_structure(frame: pd.DataFrame) -> None:
    assert frame["span_id"].is_unique
    roots = frame[frame["parent_span_id"].isna()]
    assert set(roots["kind"]) == {"request", "index_build"}  # index refreshes are traces of their own
    assert roots["trace_id"].is_unique
    assert set(roots["trace_id"]) == set(frame["trace_id"])

    children = frame[frame["parent_span_id"].notna()]
    parents = frame[["trace_id", "span_id", "start", "end"]].rename(
        columns={"span_id": "parent_span_id", "start": "parent_start", "end": "parent_end"}
    )
    linked = children.merge(parents, on=["trace_id", "parent_span_id"], how="left", validate="many_to_one")
    assert linked["parent_start"].notna().all(), "every parent exists in the same trace"
    assert (linked["start"] >= linked["parent_start"]).all()
    assert (linked["end"] <= linked["parent_end"]).all()

    root_times = roots[["trace_id", "start", "end"]].rename(columns={"start": "root_start", "end": "root_end"})
    within = children.merge(root_times, on="trace_id")
    assert ((within["start"] >= within["root_start"]) & (within["end"] <= within["root_end"])).all()

    steps = frame[frame["kind"] == "agent_step"]
    assert steps["parent_span_id"].isin(roots["span_id"]).all()
    step_children = frame[frame["parent_span_id"].isin(steps["span_id"])]
    assert set(step_children["kind"]) == {"llm", "tool"}


def test_chunks_are_seconds_of_whole_traces_in_trace_order(chunks: list[list[dict[str, object]]]) -> None:
    assert len(chunks) == math.ceil(BIG.duration_s)
    seen: set[str] = set()
    for second, chunk in enumerate(chunks):
        trace_ids = [span["trace_id"] for span in chunk]
        starts = np.flatnonzero([trace_ids[i] != trace_ids[i - 1] for i in range(1, len(trace_ids))]) + 1
        firsts = [chunk[0], *(chunk[i] for i in starts)] if chunk else []
        assert all(span["parent_span_id"] is None for span in firsts), "each trace starts with its root"
        chunk_traces = {span["trace_id"] for span in firsts}
        assert len(chunk_traces) == len(firsts), "a trace's spans are contiguous"
        assert not chunk_traces & seen, "a trace never spans two chunks"
        seen |= chunk_traces
        lower = NOON + timedelta(seconds=second)
        for root in firsts:
            assert lower <= datetime.fromisoformat(str(root["start_time"])) < lower + timedelta(seconds=1)


def test_cache_hits_skip_the_answer_and_rates_are_in_band(frame: pd.DataFrame) -> None:
    cache = frame[frame["kind"] == "cache"]
    rag = cache[cache["feature"].isin(["support-chat", "doc-search"])]
    exact = rag.loc[rag["cache_layer"] == "exact", "cache_hit"].astype(bool).mean()
    semantic = rag.loc[rag["cache_layer"] == "semantic", "cache_hit"].astype(bool).mean()
    assert 0.17 < exact < 0.23
    assert 0.14 < semantic < 0.20
    hit_traces = set(cache.loc[cache["cache_hit"].astype(bool), "trace_id"])
    cached_features = frame["feature"].isin(["support-chat", "doc-search", "summarise"])
    cached_requests = frame[(frame["kind"] == "request") & cached_features]
    served = cached_requests["trace_id"].isin(hit_traces).mean()
    assert 0.25 < served < 0.37
    answered = set(frame.loc[frame["kind"].isin(["llm", "retrieval", "rerank"]), "trace_id"])
    assert not hit_traces & answered, "a cache hit skips retrieval and the LLM call"
    semantic_hits = cache[(cache["cache_layer"] == "semantic") & cache["cache_hit"].astype(bool)]
    assert semantic_hits["cache_similarity"].between(0.92, 1.0).all()
    assert cache.loc[~cache["cache_hit"].astype(bool), "cache_similarity"].isna().all()


def test_errors_retries_and_fallbacks(frame: pd.DataFrame) -> None:
    llm = frame[frame["kind"] == "llm"]
    first = llm[llm["attempt"] == 0]
    assert 0.013 < (first["status"] == "error").mean() < 0.024
    rate_limited = llm[llm["error_type"] == "rate_limited"]
    assert 0.005 < len(rate_limited) / len(llm) < 0.02, "429s present but under the 2% alert threshold"
    assert (rate_limited["http_status"] == 429).all() and (rate_limited["retry_after_s"] >= 1).all()
    assert (llm.loc[llm["error_type"] == "timeout", "duration_ms"] == CLIENT_TIMEOUT_MS).all()
    assert llm.loc[llm["error_type"] == "server_error", "http_status"].isin([500, 502, 503]).all()
    assert 1.01 < len(llm) / len(first) < 1.04, "retry amplification"

    # attempts of one call share trace and parent, are numbered 0..n, and only the last may succeed
    calls = llm.sort_values("start").groupby(["trace_id", "parent_span_id"], sort=False)
    tried = calls["attempt"].agg(list)
    assert tried.map(lambda a: a == list(range(len(a)))).all()
    failed_before_last = calls["status"].agg(lambda s: list(s)[:-1])
    assert failed_before_last.map(lambda s: all(x == "error" for x in s)).all()
    assert (tried.map(len) == 3).sum() > 20

    fallbacks = llm[llm["routing_reason"] == "fallback"]
    assert len(fallbacks) > 20
    assert (fallbacks["attempt"] == 2).all() and fallbacks["fallback_from"].notna().all()
    assert (fallbacks["fallback_from"] != fallbacks["model_requested"]).all()
    assert llm.loc[llm["routing_reason"] != "fallback", "fallback_from"].isna().all()

    context = llm[(llm["error_type"] == "context_length_exceeded") | llm["context_truncated"].astype(bool)]
    assert (llm["error_type"] == "context_length_exceeded").any() and llm["context_truncated"].astype(bool).any()
    assert len(context) / len(llm) < 0.001, "rare enough not to page the context-exhaustion alert"

    tools = frame[frame["kind"] == "tool"]
    assert 0.012 < (tools["error_type"] == "tool_error").mean() < 0.03
    assert set(tools["tool_name"]) == {"search_web", "sql_query", "send_email"}
    roots = frame[frame["kind"] == "request"]
    assert 0 < (roots["status"] == "error").mean() < 0.002


def test_a_retry_after_429_waits_for_retry_after(frame: pd.DataFrame) -> None:
    llm = frame[frame["kind"] == "llm"].sort_values("start")
    following = llm.groupby(["trace_id", "parent_span_id"])["start"].shift(-1)
    limited = llm[(llm["error_type"] == "rate_limited") & following.notna()]
    waited = (following[limited.index] - limited["end"]).dt.total_seconds()
    assert len(limited) > 50
    assert (waited >= limited["retry_after_s"]).all()


def test_routing_mix(frame: pd.DataFrame) -> None:
    ok = frame[(frame["kind"] == "llm") & (frame["status"] == "ok")]
    assert set(ok["model_tier"]) == {"small", "large"}
    chat = ok[(ok["feature"] == "support-chat") & (ok["routing_reason"] != "fallback")]
    assert 0.03 < (chat["routing_reason"] == "canary").mean() < 0.07
    assert 0.19 < (chat["routing_reason"] == "escalation").mean() < 0.27
    assert (chat.loc[chat["model_tier"] == "large", "model_requested"] == "claude-3-5-sonnet").all()
    planner = ok[(ok["route"] == "code-agent:planner") & (ok["routing_reason"] != "fallback")]
    assert (planner["model_requested"] == "o3-mini").all()
    assert all(route.startswith(f"{feature}:") for route, feature in zip(ok["route"], ok["feature"], strict=True))


def test_token_accounting_follows_the_providers(frame: pd.DataFrame) -> None:
    ok = frame[(frame["kind"] == "llm") & (frame["status"] == "ok")]
    assert (ok["output_tokens"] >= 1).all() and (ok["input_tokens"] > 0).all()
    anthropic = ok[ok["provider"] == "anthropic"]
    reads_prefix = anthropic[anthropic["feature"] != "summarise"]
    assert 0.62 < (reads_prefix["cache_read_tokens"] > 0).mean() < 0.78
    assert 0.10 < (reads_prefix["cache_write_tokens"] > 0).mean() < 0.20
    assert not ((anthropic["cache_read_tokens"] > 0) & (anthropic["cache_write_tokens"] > 0)).any()
    assert (ok.loc[ok["provider"] != "anthropic", "cache_write_tokens"] == 0).all()
    summaries = anthropic[anthropic["feature"] == "summarise"]
    haiku_summaries = summaries[summaries["model_requested"] == "claude-3-5-haiku"]
    assert (haiku_summaries["cache_read_tokens"] == 0).all(), "prefix below Haiku's 2048-token cache minimum"
    openai = ok[ok["provider"] == "openai"]
    assert (openai["cache_read_tokens"] % 128 == 0).all() and (openai["cache_read_tokens"] > 0).any()
    reasoning = ok["reasoning_tokens"] > 0
    assert (ok.loc[reasoning, "model_requested"] == "o3-mini").all()
    assert reasoning[ok["model_requested"] == "o3-mini"].all()
    failed = frame[(frame["kind"] == "llm") & (frame["status"] == "error")]
    assert (failed[["input_tokens", "output_tokens"]] == 0).all().all(), "failed attempts are not billed"


def test_latency_shape_per_model(frame: pd.DataFrame) -> None:
    ok = frame[(frame["kind"] == "llm") & (frame["status"] == "ok")]
    ttft = ok.groupby("model_requested")["ttft_ms"].median()
    assert ttft.between(200, 1500).all()
    assert ttft["gemini-1.5-flash"] < ttft["gpt-4o-mini"] < ttft["gpt-4o"]
    tpot = (ok["duration_ms"] - ok["ttft_ms"]) / (ok["output_tokens"] - 1).clip(lower=1)
    per_model = tpot[ok["output_tokens"] > 50].groupby(ok["model_requested"]).median()
    assert per_model["gemini-1.5-flash"] < per_model["gpt-4o"] < per_model["llama-3.1-70b"]


def test_retrieval_rerank_and_evals(frame: pd.DataFrame) -> None:
    retrieval = frame[frame["kind"] == "retrieval"]
    assert (retrieval["embedding_model"] == retrieval["index_embedding_model"]).all()
    suffix = retrieval["feature"].map({"support-chat": "support-kb", "doc-search": "docs"})
    assert (retrieval["index_name"] == retrieval["tenant_id"] + "-" + suffix).all()
    for kind in ("retrieval", "rerank"):
        part = frame[frame["kind"] == kind]
        assert (part["retrieval_doc_ids"].map(len) == part["top_k"]).all()
        assert (part["retrieval_scores"].map(len) == part["top_k"]).all()
        assert part["retrieval_doc_ids"].map(lambda ids: len(set(ids)) == len(ids)).all()
        assert part["retrieval_scores"].map(lambda s: all(a >= b for a, b in pairwise(s))).all()
    reranked = frame[frame["kind"] == "rerank"].merge(
        retrieval[["trace_id", "retrieval_doc_ids"]], on="trace_id", suffixes=("", "_retrieved")
    )
    assert reranked.apply(lambda r: set(r["retrieval_doc_ids"]) <= set(r["retrieval_doc_ids_retrieved"]), axis=1).all()

    evals = frame[frame["kind"] == "eval"]
    judged = evals[evals["eval_name"].isin(["faithfulness", "answer_relevance"])]
    assert len(judged) > 300
    assert (judged["eval_passed"] == (judged["eval_score"] >= 0.7)).all()
    canary = evals[evals["eval_name"] == "recall@5"]
    minutes = math.ceil(BIG.duration_s / 60)
    assert canary.groupby("tenant_id").size().between(minutes - 1, minutes).all()
    assert set(canary["tenant_id"]) == set(BIG.tenants)
    roots = frame[(frame["kind"] == "request") & frame["trace_id"].isin(canary["trace_id"])]
    assert roots["attributes"].map(lambda a: a == {"synthetic": "true"}).all()
    assert roots["session_id"].isna().all()


def test_model_names_resolve_in_genai_prices(frame: pd.DataFrame) -> None:
    priced = frame[frame["kind"].isin(["llm", "embedding"])]
    names = set(zip(priced["provider"], priced["model_requested"], strict=True)) | set(
        zip(priced["provider"], priced["model_response"].fillna(priced["model_requested"]), strict=True)
    )
    assert ("selfhosted", "llama-3.1-70b") in names
    assert {provider for provider, _ in names} == {"openai", "anthropic", "google", "selfhosted"}
    for provider, model in sorted(names):
        usage = Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=200)
        if provider == "selfhosted":
            with pytest.raises(LookupError):
                calc_price(usage, model, provider_id=provider, genai_request_timestamp=NOON)
        else:
            assert calc_price(usage, model, provider_id=provider, genai_request_timestamp=NOON).total_price > 0


def test_diurnal_load_peaks_in_the_afternoon() -> None:
    peak_hour = NOON.replace(hour=15)
    factors = diurnal_factor(np.array([peak_hour.timestamp(), peak_hour.replace(hour=3).timestamp()]))
    assert factors[0] == pytest.approx(1.6) and factors[1] == pytest.approx(0.4)

    def requests_at(start: datetime) -> int:
        config = WorkloadConfig(seed=5, start=start, duration_s=300, requests_per_s=20.0)
        roots = (s for c in generate_traces(config) for s in c if s["kind"] == "request")
        return sum("attributes" not in root for root in roots)

    peak, trough = requests_at(peak_hour), requests_at(peak_hour.replace(hour=3))
    assert 3.0 < peak / trough < 5.5
    assert peak / 300 == pytest.approx(20.0 * 1.6, rel=0.25)


def test_deterministic_for_a_seed() -> None:
    config = WorkloadConfig(seed=3, start=NOON, duration_s=90, requests_per_s=10.0)
    first = list(generate_traces(config))
    assert first == list(generate_traces(config))
    other = list(generate_traces(WorkloadConfig(seed=4, start=NOON, duration_s=90, requests_per_s=10.0)))
    assert [s["trace_id"] for c in other for s in c] != [s["trace_id"] for c in first for s in c]


def test_user_ids_only_when_asked() -> None:
    plain = [s for c in generate_traces(WorkloadConfig(start=NOON, duration_s=20)) for s in c]
    assert not any("user_id" in s or "user_id_hash" in s for s in plain)
    raw = [s for c in generate_traces(WorkloadConfig(start=NOON, duration_s=20, raw_user_ids=True)) for s in c]
    users = [s for s in raw if s.get("user_id") is not None]  # index builds are jobs, not users
    assert len(users) > 0.9 * len(raw)
    assert all(str(s["user_id"]).startswith(f"{s['tenant_id']}-user-") for s in users)
    assert not any("user_id_hash" in s for s in raw)
    by_trace = pd.DataFrame.from_records(raw).groupby("trace_id")["user_id"].nunique(dropna=False)
    assert (by_trace == 1).all(), "one user per request"


def test_tenants_have_different_sizes() -> None:
    summary = summarize(s for c in generate_traces(WorkloadConfig(start=NOON, duration_s=120)) for s in c)
    sizes = [summary["by_tenant"][t] for t in ("acme", "globex", "initech", "umbrella")]  # type: ignore[index]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 3 * sizes[-1]
    two = WorkloadConfig(start=NOON, duration_s=30, tenants=("north", "south"))
    custom = [s for c in generate_traces(two) for s in c]
    assert {s["tenant_id"] for s in custom} == {"north", "south"}


def test_config_is_checked() -> None:
    assert WorkloadConfig(start=datetime(2026, 1, 1)).start.tzinfo == UTC
    for bad in (
        {"duration_s": 0},
        {"requests_per_s": -1.0},
        {"tenants": ()},
        {"tenants": ("a", "a")},
        {"duration_s": float("nan")},
    ):
        with pytest.raises(ValueError):
            WorkloadConfig(start=NOON, **bad)  # type: ignore[arg-type]
    partial = list(generate_traces(WorkloadConfig(start=NOON, duration_s=2.5, requests_per_s=50.0)))
    assert len(partial) == 3
    last_roots = [s for s in partial[2] if s["kind"] == "request"]
    assert all(datetime.fromisoformat(str(s["start_time"])) < NOON + timedelta(seconds=2.5) for s in last_roots)


def test_summary_and_speed() -> None:
    config = WorkloadConfig(seed=1, start=NOON, duration_s=600, requests_per_s=20.0)
    started = time.perf_counter()
    spans = [span for chunk in generate_traces(config) for span in chunk]
    seconds = time.perf_counter() - started
    print(f"\nworkload: {len(spans):,} spans in {seconds:.2f} s = {len(spans) / seconds:,.0f} spans/s")
    assert len(spans) > 100_000
    summary = summarize(spans)
    assert summary["spans"] == len(spans)
    assert sum(summary["by_kind"].values()) == len(spans)  # type: ignore[attr-defined]
    assert sum(summary["by_tenant"].values()) == len(spans)  # type: ignore[attr-defined]
    assert summary["requests"] == summary["by_kind"]["request"]  # type: ignore[index]
    assert summary["traces"] == summary["requests"] + summary["by_kind"]["index_build"]  # type: ignore[index, operator]
    assert summary["tokens"]["input_tokens"] == sum(int(s.get("input_tokens", 0)) for s in spans)  # type: ignore[index]
    assert summary["by_model"]["text-embedding-3-small"] == summary["by_kind"]["embedding"]  # type: ignore[index]
    assert summarize([])["spans"] == 0


def test_indexes_are_rebuilt_every_ten_minutes_and_an_incident_shrinks_only_its_target() -> None:
    kwargs = {"start": NOON, "hours": 1.0, "requests_per_s": 0.5, "seed": 4, "tenants": ("acme", "globex")}
    plain = [s for c in generate_traces(get_scenario("baseline").workload(**kwargs)) for s in c]
    shrunk = [
        s
        for c in generate_traces(
            get_scenario("index-shrink").workload(**kwargs, incident_at_min=20, incident_minutes=20)
        )
        for s in c
    ]
    builds = pd.DataFrame([s for s in plain if s["kind"] == "index_build"])
    assert set(builds["index_name"]) == {"acme-support-kb", "acme-docs", "globex-support-kb", "globex-docs"}
    for _, one in builds.groupby("index_name"):
        gaps = pd.to_datetime(one["start_time"]).diff().dropna()
        assert (gaps == pd.Timedelta(minutes=10)).all() and one["index_documents"].is_monotonic_increasing
        assert (one["index_chunks"] > 4 * one["index_documents"]).all()
    for span in builds.to_dict("records"):
        Span.model_validate({k: v for k, v in span.items() if not (isinstance(v, float) and math.isnan(v))})
    after = pd.DataFrame([s for s in shrunk if s["kind"] == "index_build"])
    changed = after["index_documents"].to_numpy() != builds["index_documents"].to_numpy()
    assert set(after.loc[changed, "index_name"]) == {"acme-docs"} and changed.sum() == 2  # the builds at 20 and 30 min
    ratio = after.loc[changed, "index_documents"].to_numpy() / builds.loc[changed, "index_documents"].to_numpy()
    assert np.allclose(ratio, 0.7, atol=0.001)
    assert [s for s in plain if s["kind"] != "index_build"] == [s for s in shrunk if s["kind"] != "index_build"]
