"""The request pipelines of the simulated RAG + agent application, one block at a time.

Each flow handles all requests of one feature in the block together: stage by stage, with
boolean masks deciding which requests reach the next stage (a cache hit skips the rest,
an agent run stops when its LLM call fails for good). Flows return, per request, when
the last child span ended and the request's error, from which the root span is built.
"""

from __future__ import annotations

import hashlib

import numpy as np

from spanline.simulator.workload_arrivals import Requests
from spanline.simulator.workload_catalog import (
    AGENT_MAX_STEPS,
    CANARY_K,
    EXACT_HIT,
    FEATURES,
    PLANNER_ROUTE,
    SEMANTIC_HIT,
    SUMMARY_EXACT_HIT,
    FeatureSpec,
)
from spanline.simulator.workload_incident import IncidentRows
from spanline.simulator.workload_llm import LlmPlan, failed, fit_context, llm_call, route
from spanline.simulator.workload_spans import SpanSink
from spanline.simulator.workload_stages import (
    Stage,
    agent_extra_steps,
    cache_lookup,
    canary_recall,
    embed_query,
    judge_eval,
    rerank,
    retrieve,
    start_at,
    tool_call,
)

Flow = tuple[np.ndarray, np.ndarray]


def prompt_hash(prompt_id: str, version: str) -> str:
    """Stable hash of a prompt template version (what ``prompt_hash`` groups by)."""
    return hashlib.sha256(f"{prompt_id}@{version}".encode()).hexdigest()[:16]


_VERSIONS = [np.array([v for v, _ in f.prompt_versions], dtype=object) for f in FEATURES]
_HASHES = [np.array([prompt_hash(f.prompt_id, v) for v, _ in f.prompt_versions], dtype=object) for f in FEATURES]


def _plan(
    st: Stage,
    spec: FeatureSpec,
    req: np.ndarray,
    version: np.ndarray,
    routing: tuple[np.ndarray, ...],
    input_tokens: np.ndarray,
    tool_call_rows: np.ndarray,
    may_overflow: bool,
) -> LlmPlan:
    """Size the routed rows' prompts and answers (``req``: their request rows)."""
    n = len(version)
    model, names, tiers, reasons = routing
    tokens, oversize = fit_context(st, req, model, input_tokens, may_overflow)
    feature = FEATURES.index(spec)
    verbosity = st.knob(req, 1.0, st.incident.effects.output_factor)
    versions, hashes = _VERSIONS[feature][version], _HASHES[feature][version]
    rolled_out = st.incident.effects.prompt_version
    if rolled_out is not None and st.incident.any:
        affected = st.incident.rows(req)
        versions = np.where(affected, rolled_out, versions).astype(object)
        hashes = np.where(affected, prompt_hash(spec.prompt_id, rolled_out), hashes).astype(object)
    return LlmPlan(
        model=model,
        route=names,
        tier=tiers,
        reason=reasons,
        input_tokens=tokens,
        prefix_tokens=spec.prefix_tokens,
        output_tokens=np.maximum(1, st.lognormal(spec.output_median, 0.6, n) * verbosity).astype(np.int64),
        max_output_tokens=np.broadcast_to(np.round(spec.max_output_tokens * verbosity).astype(np.int64), (n,)),
        tool_call=tool_call_rows,
        oversize=oversize,
        prompt_id=spec.prompt_id,
        prompt_version=versions,
        prompt_hash=hashes,
    )


def _prompt_tokens(st: Stage, spec: FeatureSpec, n: int, sigma: float) -> np.ndarray:
    return spec.prefix_tokens + st.lognormal(spec.input_median, sigma, n)


def _answered_evals(
    st: Stage, spec: FeatureSpec, req: np.ndarray, end: np.ndarray, error: np.ndarray, root: np.ndarray
) -> np.ndarray:
    """Judge a sample of successful answers; returns the updated end times."""
    pos = np.flatnonzero(~failed(error) & (st.rng.random(len(req)) < spec.eval_share))
    end = end.copy()
    end[pos] = judge_eval(st, req[pos], end[pos] + st.gap(len(pos)), root[pos])
    return end


def rag_flow(
    st: Stage, spec: FeatureSpec, requests: Requests, req: np.ndarray, cursor: np.ndarray, root: np.ndarray
) -> Flow:
    """Exact cache → embed → semantic cache → retrieve → (rerank) → answer → (eval)."""
    n = len(req)
    end, exact_hit = cache_lookup(st, req, cursor, root, "exact", EXACT_HIT)
    error = np.full(n, None, dtype=object)
    miss = np.flatnonzero(~exact_hit)
    embedded = embed_query(st, req[miss], end[miss] + st.gap(len(miss)), root[miss])
    semantic_end, semantic_hit = cache_lookup(
        st, req[miss], embedded + st.gap(len(miss)), root[miss], "semantic", SEMANTIC_HIT
    )
    end[miss] = semantic_end
    go = miss[~semantic_hit]
    index_name = requests.columns.tenant_id[req[go]] + f"-{spec.index_suffix}"
    retrieved, docs = retrieve(
        st, req[go], end[go] + st.gap(len(go)), root[go], index_name, spec.index_suffix, spec.top_k
    )
    reranked = st.rng.random(len(go)) < spec.rerank_share
    ready = retrieved.copy()
    ready[reranked] = rerank(
        st,
        req[go][reranked],
        retrieved[reranked] + st.gap(int(reranked.sum())),
        root[go][reranked],
        docs[reranked],
        spec.index_suffix,
        spec.rerank_top_n,
    )
    plan = _plan(
        st,
        spec,
        req[go],
        requests.prompt_version[req[go]],
        route(st, spec.routes, req[go]),
        _prompt_tokens(st, spec, len(go), 0.45),
        np.zeros(len(go), dtype=bool),
        may_overflow=False,
    )
    end[go], error[go] = llm_call(st, req[go], ready + st.gap(len(go)), root[go], plan)
    end[go] = _answered_evals(st, spec, req[go], end[go], error[go], root[go])
    return end, error


def summarise_flow(
    st: Stage, spec: FeatureSpec, requests: Requests, req: np.ndarray, cursor: np.ndarray, root: np.ndarray
) -> Flow:
    """Exact cache → one long-document call (the feature that meets context limits) → (eval)."""
    n = len(req)
    end, hit = cache_lookup(st, req, cursor, root, "exact", SUMMARY_EXACT_HIT)
    error = np.full(n, None, dtype=object)
    go = np.flatnonzero(~hit)
    plan = _plan(
        st,
        spec,
        req[go],
        requests.prompt_version[req[go]],
        route(st, spec.routes, req[go]),
        _prompt_tokens(st, spec, len(go), 0.9),
        np.zeros(len(go), dtype=bool),
        may_overflow=True,
    )
    end[go], error[go] = llm_call(st, req[go], end[go] + st.gap(len(go)), root[go], plan)
    end[go] = _answered_evals(st, spec, req[go], end[go], error[go], root[go])
    return end, error


def agent_flow(
    st: Stage, spec: FeatureSpec, requests: Requests, req: np.ndarray, cursor: np.ndarray, root: np.ndarray
) -> Flow:
    """Plan with a reasoning model, then act with tools step by step, then respond.

    Each step is an ``agent_step`` span holding its LLM call and, except for the last
    step, one tool call. The executor model is routed once per run. A call that fails
    for good ends the run.
    """
    n = len(req)
    steps = 2 + np.minimum(st.rng.poisson(agent_extra_steps(st, req), n), AGENT_MAX_STEPS - 2)
    executor = route(st, spec.routes, req)
    version = requests.prompt_version[req]
    error = np.full(n, None, dtype=object)
    cursor = cursor.copy()
    for k in range(int(steps.max(initial=0))):
        pos = np.flatnonzero((steps > k) & ~failed(error))
        if not len(pos):
            break
        step_id = st.sink.new_ids(len(pos))
        step_start = start_at(cursor[pos])
        acting = k < steps[pos] - 1
        prompt = _prompt_tokens(st, spec, len(pos), 0.4) + k * st.lognormal(1200.0, 0.5, len(pos))
        routing = route(st, (PLANNER_ROUTE,), req[pos]) if k == 0 else tuple(column[pos] for column in executor)
        plan = _plan(st, spec, req[pos], version[pos], routing, prompt, acting, may_overflow=False)
        answered, step_error = llm_call(st, req[pos], step_start + st.gap(len(pos)), step_id, plan)
        step_failed = failed(step_error)
        tools = np.flatnonzero(acting & ~step_failed)
        done = answered.copy()
        done[tools] = tool_call(st, req[pos][tools], answered[tools] + st.gap(len(tools)), step_id[tools])
        done += st.gap(len(pos))
        name = np.where(k == 0, "plan", np.where(acting, "act", "respond")).astype(object)
        st.sink.add(
            req[pos],
            "agent_step",
            step_start,
            done - step_start,
            root[pos],
            step_id,
            name=name,
            status=np.where(step_failed, "error", "ok").astype(object),
            error_type=step_error,
        )
        cursor[pos] = done
        error[pos] = step_error
    return cursor, error


def canary_flow(st: Stage, requests: Requests, req: np.ndarray, cursor: np.ndarray, root: np.ndarray) -> np.ndarray:
    """Synthetic query with known answers: embed → retrieve top-k → recall@k eval."""
    n = len(req)
    embedded = embed_query(st, req, cursor, root)
    suffix = next(f.index_suffix for f in FEATURES if f.name == "doc-search")
    index_name = requests.columns.tenant_id[req] + f"-{suffix}"
    retrieved, _ = retrieve(st, req, embedded + st.gap(n), root, index_name, suffix, CANARY_K)
    return canary_recall(st, req, retrieved + st.gap(n), root, index_name)


_FLOWS = {"rag": rag_flow, "summarise": summarise_flow, "agent": agent_flow}
_ROOT_NAMES = np.array([f.root_name for f in FEATURES], dtype=object)


#: Per feature (FEATURES order): share of requests handed to a human, share that get user feedback.
ESCALATION_SHARE = {"support-chat": 0.06, "doc-search": 0.01, "summarise": 0.005, "code-agent": 0.03}
FEEDBACK_SHARE = {"support-chat": 0.12, "doc-search": 0.12, "summarise": 0.05, "code-agent": 0.12}
#: Share of feedback that is positive (thumbs up) after a successful request, and after a failed one.
POSITIVE_FEEDBACK, POSITIVE_AFTER_FAILURE = 0.85, 0.3
ESCALATION_REASONS = np.array(["user_asked", "low_confidence", "policy"], dtype=object)
_ESCALATE = np.array([ESCALATION_SHARE[f.name] for f in FEATURES])
_FEEDBACK = np.array([FEEDBACK_SHARE[f.name] for f in FEATURES])


def _outcomes(
    st: Stage, requests: Requests, req: np.ndarray, end: np.ndarray, root: np.ndarray, failed: np.ndarray
) -> None:
    """What happened to each answer: a human escalation (failed requests escalate 3x as often) and
    end-user feedback, as spans in the request's trace just before its end."""
    n = len(req)
    feature = requests.feature[req]
    usual = np.minimum(1.0, np.where(failed, 3.0, 1.0) * _ESCALATE[feature])
    escalate = st.rng.random(n) < st.knob(req, usual, st.incident.effects.escalation_share)
    gives_feedback = st.rng.random(n) < _FEEDBACK[feature]
    usual_positive = st.knob(req, POSITIVE_FEEDBACK, st.incident.effects.positive_feedback)
    positive = st.rng.random(n) < np.where(failed, POSITIVE_AFTER_FAILURE, usual_positive)
    reason = ESCALATION_REASONS[st.rng.integers(0, len(ESCALATION_REASONS), n)]
    start = np.floor(end - 1.0)
    for mask, kind, fields in (
        (escalate, "escalation", {"name": reason[escalate], "status": "ok"}),
        (
            gives_feedback,
            "feedback",
            {
                "name": "user_feedback",
                "status": "ok",
                "eval_name": "thumbs",
                "eval_score": positive[gives_feedback].astype(float),
                "eval_passed": positive[gives_feedback],
            },
        ),
    ):
        st.sink.add(req[mask], kind, start[mask], np.full(int(mask.sum()), 0.5), root[mask], **fields)


def simulate_block(
    rng: np.random.Generator, requests: Requests, epoch_ms: int, incident: IncidentRows | None = None
) -> tuple[list[dict[str, object]], np.ndarray]:
    """All spans of the block's requests, in trace order, and each span's request row."""
    st = Stage(rng, SpanSink(rng, requests.columns, epoch_ms), incident or IncidentRows.none(len(requests)))
    n = len(requests)
    root = st.sink.new_ids(n)
    cursor = requests.arrival_ms + st.gap(n)
    end = np.empty(n)
    error = np.full(n, None, dtype=object)
    for index, spec in enumerate(FEATURES):
        req = np.flatnonzero((requests.feature == index) & ~requests.canary)
        end[req], error[req] = _FLOWS[spec.flow](st, spec, requests, req, cursor[req], root[req])
    canary = np.flatnonzero(requests.canary)
    end[canary] = canary_flow(st, requests, canary, cursor[canary], root[canary])

    duration = end + st.rng.uniform(1.0, 4.0, n) - requests.arrival_ms
    real = np.flatnonzero(~requests.canary)
    st.sink.add(
        real,
        "request",
        requests.arrival_ms[real],
        duration[real],
        None,
        root[real],
        name=_ROOT_NAMES[requests.feature[real]],
        status=np.where(failed(error[real]), "error", "ok").astype(object),
        error_type=error[real],
    )
    _outcomes(st, requests, real, requests.arrival_ms[real] + duration[real], root[real], failed(error[real]))
    st.sink.add(
        canary,
        "request",
        requests.arrival_ms[canary],
        duration[canary],
        None,
        root[canary],
        name=f"canary recall@{CANARY_K}",
        status="ok",
        attributes={"synthetic": "true"},
    )
    return st.sink.render()
