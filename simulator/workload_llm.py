"""LLM calls as the application makes them: routed, retried, falling back, streamed.

One logical call becomes one span per attempt: attempt 0 on the routed model, attempt 1
on the same model after the provider's Retry-After (429) or an exponential backoff, and
attempt 2 on the fallback model (``routing_reason`` fallback, ``fallback_from`` set).
Tokens follow the OpenTelemetry GenAI convention the schema uses: cache reads/writes are
inside ``input_tokens``, reasoning inside ``output_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from spanline.simulator.workload_catalog import (
    ANTHROPIC_CACHE_READ,
    ANTHROPIC_CACHE_WRITE,
    CLIENT_TIMEOUT_MS,
    FALLBACK,
    FALLBACK_FAILURE,
    FIRST_ATTEMPT_FAILURES,
    LENGTH_FINISH_SHARE,
    MAX_ATTEMPTS,
    MODEL_INDEX,
    MODELS,
    OPENAI_CACHE_READ,
    OUTPUT_RESERVE_TOKENS,
    OVERSIZE_SHARE,
    RETRY_FAILURE,
    SERVER_ERROR_STATUSES,
    Route,
)
from spanline.simulator.workload_spans import Column
from spanline.simulator.workload_stages import Stage, start_at

_PROVIDER = np.array([m.provider for m in MODELS], dtype=object)
_ENDPOINT = np.array([m.endpoint for m in MODELS], dtype=object)
_REGION = np.array([m.region for m in MODELS], dtype=object)
_REQUESTED = np.array([m.model_requested for m in MODELS], dtype=object)
_RESPONSE = np.array([m.model_response for m in MODELS], dtype=object)
_CONTEXT = np.array([m.context_window for m in MODELS], dtype=np.int64)
_TTFT = np.array([m.ttft_median_ms for m in MODELS])
_PREFILL = np.array([m.prefill_tokens_per_s for m in MODELS])
_TPS = np.array([m.tokens_per_s for m in MODELS])
_ANTHROPIC = np.array([m.caching == "anthropic" for m in MODELS])
_OPENAI = np.array([m.caching == "openai" for m in MODELS])
_CACHE_MIN = np.array([m.cache_min_tokens if m.caching else np.iinfo(np.int64).max for m in MODELS])
_REASONING = np.array([m.reasoning for m in MODELS])
_FINISH = np.array([m.finish_reasons for m in MODELS], dtype=object)
_FALLBACK = np.array([MODEL_INDEX[FALLBACK[m.key]] for m in MODELS])

_ERROR_TYPES = np.array(["rate_limited", "timeout", "server_error", "context_length_exceeded"], dtype=object)
_RATE_LIMITED, _TIMEOUT, _SERVER_ERROR, _CONTEXT_EXCEEDED = range(4)
_FIRST_FAILURE = sum(FIRST_ATTEMPT_FAILURES.values())
_FAILURE_MIX = np.array([FIRST_ATTEMPT_FAILURES[t] for t in _ERROR_TYPES[:3]]) / _FIRST_FAILURE


@dataclass(frozen=True)
class LlmPlan:
    """What the application asks of one logical LLM call, per row, before retries."""

    model: np.ndarray
    route: np.ndarray
    tier: np.ndarray
    reason: np.ndarray
    #: Prompt size, fixed prefix included; larger than the window only for oversize rows.
    input_tokens: np.ndarray
    prefix_tokens: int
    #: Visible output the model would write (reasoning is added per model).
    output_tokens: np.ndarray
    max_output_tokens: np.ndarray
    tool_call: np.ndarray
    #: 0 fits; 1 too large, truncated before the first call; 2 too large, first call rejected.
    oversize: np.ndarray
    prompt_id: str
    prompt_version: np.ndarray
    prompt_hash: np.ndarray


def route(st: Stage, routes: tuple[Route, ...], req: np.ndarray) -> tuple[np.ndarray, ...]:
    """The router's choice per request row: (model index, route name, tier, routing reason)."""
    shares = np.array([r.share for r in routes])
    pick = st.rng.choice(len(routes), len(req), p=shares / shares.sum())
    large_share = st.incident.effects.large_share
    if large_share is not None and st.incident.any:
        pick = _shift_tiers(st, routes, pick, st.incident.rows(req), large_share)
    model = np.array([MODEL_INDEX[r.model] for r in routes])[pick]
    names = np.array([r.name for r in routes], dtype=object)[pick]
    tiers = np.array([r.tier for r in routes], dtype=object)[pick]
    reasons = np.array([r.reason for r in routes], dtype=object)[pick]
    return model, names, tiers, reasons


def _shift_tiers(
    st: Stage, routes: tuple[Route, ...], pick: np.ndarray, affected: np.ndarray, large_share: float
) -> np.ndarray:
    """Re-route affected rows so ``large_share`` of them land on the large tier (routes keep
    their relative shares within a tier); a feature with a single tier keeps its routing."""
    shares = np.array([r.share for r in routes])
    large = np.array([r.tier == "large" for r in routes])
    if large.all() or not large.any():
        return pick
    rows = np.flatnonzero(affected)
    to_large = st.rng.random(len(rows)) < large_share
    pick = pick.copy()
    for tier_mask, chosen in ((large, to_large), (~large, ~to_large)):
        candidates = np.flatnonzero(tier_mask)
        weights = shares[candidates] / shares[candidates].sum()
        pick[rows[chosen]] = candidates[st.rng.choice(len(candidates), int(chosen.sum()), p=weights)]
    return pick


def fit_context(
    st: Stage, req: np.ndarray, model: np.ndarray, input_tokens: np.ndarray, may_overflow: bool
) -> tuple[np.ndarray, ...]:
    """Clip prompts to what both the model and its fallback accept; make a few oversize ones.

    Returns (input tokens, oversize code). Only ``may_overflow`` callers (long documents)
    produce oversize prompts: 1.05–1.6× the routed model's window.
    """
    n = len(model)
    window = np.minimum(_CONTEXT[model], _CONTEXT[_FALLBACK[model]]) - OUTPUT_RESERVE_TOKENS
    tokens = np.minimum(input_tokens, window).astype(np.int64)
    oversize = np.zeros(n, dtype=np.int8)
    if may_overflow:
        u = st.rng.random(n)
        share = st.knob(req, OVERSIZE_SHARE, st.incident.effects.oversize_share)
        oversize[u < share] = 2
        oversize[u < share / 2] = 1
        big = oversize > 0
        tokens[big] = (_CONTEXT[model[big]] * st.rng.uniform(1.05, 1.6, big.sum())).astype(np.int64)
    return tokens, oversize


def failed(error: np.ndarray) -> np.ndarray:
    """Rows whose error column (error type or None) holds an error."""
    return error.astype(bool)


def llm_call(
    st: Stage, req: np.ndarray, cursor: np.ndarray, parent: np.ndarray, plan: LlmPlan
) -> tuple[np.ndarray, np.ndarray]:
    """Run one logical call per row through its attempts; returns (end, error type or None)."""
    n = len(req)
    end = np.zeros(n)
    error = np.full(n, None, dtype=object)
    truncated = plan.oversize == 1
    after_context_error = np.zeros(n, dtype=bool)
    cursor = cursor.copy()
    rows = np.arange(n)
    for attempt in range(MAX_ATTEMPTS):
        if not len(rows):
            break
        fallback = attempt == MAX_ATTEMPTS - 1
        model = _FALLBACK[plan.model[rows]] if fallback else plan.model[rows]
        retry_p = FALLBACK_FAILURE if fallback else RETRY_FAILURE
        fail_p = np.where((attempt == 0) | after_context_error[rows], _FIRST_FAILURE, retry_p)
        code = np.where(st.rng.random(len(rows)) < fail_p, st.rng.choice(3, len(rows), p=_FAILURE_MIX), -1)
        code = _incident_failures(st, req[rows], model, code)
        if attempt == 0:
            code[plan.oversize[rows] == 2] = _CONTEXT_EXCEEDED
        start = start_at(cursor[rows])
        ok = code < 0
        finish = np.empty(len(rows))
        common = _call_fields(plan, rows, model, attempt, fallback, truncated)
        finish[ok] = _succeed(st, req, parent, plan, rows[ok], start[ok], model[ok], truncated[rows[ok]], common, ok)
        finish[~ok], backoff = _fail(st, req, parent, rows[~ok], start[~ok], code[~ok], attempt, common, ~ok)
        end[rows] = finish
        error[rows] = None
        error[rows[~ok]] = _ERROR_TYPES[code[~ok]]
        rows = rows[~ok]
        cursor[rows] = finish[~ok] + backoff
        context_failed = rows[code[~ok] == _CONTEXT_EXCEEDED]
        truncated[context_failed] = True
        after_context_error[rows] = False
        after_context_error[context_failed] = True
    return end, error


def _incident_failures(st: Stage, req: np.ndarray, model: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Attempts on an incident's target provider fail with its 429 / 5xx probabilities on top."""
    effects = st.incident.effects
    if (effects.rate_limited is None and effects.server_error is None) or not st.incident.any:
        return code
    affected = np.flatnonzero(st.incident.calls(req, model))
    v = st.rng.random(len(affected))
    limited = effects.rate_limited or 0.0
    down = effects.server_error or 0.0
    code = code.copy()
    code[affected] = np.select([v < limited, v < limited + down], [_RATE_LIMITED, _SERVER_ERROR], code[affected])
    return code


def _call_fields(
    plan: LlmPlan, rows: np.ndarray, model: np.ndarray, attempt: int, fallback: bool, truncated: np.ndarray
) -> dict[str, Column]:
    """Fields shared by every attempt's span, successful or not (per row of ``rows``)."""
    return {
        "name": "chat",
        "attempt": attempt,
        "provider": _PROVIDER[model],
        "endpoint": _ENDPOINT[model],
        "region": _REGION[model],
        "model_requested": _REQUESTED[model],
        "context_window": _CONTEXT[model],
        "context_truncated": truncated[rows],
        "route": plan.route[rows],
        "model_tier": plan.tier[rows],
        "routing_reason": "fallback" if fallback else plan.reason[rows],
        "fallback_from": _REQUESTED[plan.model[rows]] if fallback else None,
        "prompt_id": plan.prompt_id,
        "prompt_version": plan.prompt_version[rows],
        "prompt_hash": plan.prompt_hash[rows],
    }


def _subset(common: dict[str, Column], mask: np.ndarray) -> dict[str, Column]:
    return {key: value[mask] if isinstance(value, np.ndarray) else value for key, value in common.items()}


def _succeed(
    st: Stage,
    req: np.ndarray,
    parent: np.ndarray,
    plan: LlmPlan,
    rows: np.ndarray,
    start: np.ndarray,
    model: np.ndarray,
    truncated: np.ndarray,
    common: dict[str, Column],
    mask: np.ndarray,
) -> np.ndarray:
    """Successful streamed responses: tokens, prompt caching, TTFT and generation time."""
    k = len(rows)
    prompt = plan.input_tokens[rows]
    prompt = np.where(truncated, np.minimum(prompt, _CONTEXT[model] - OUTPUT_RESERVE_TOKENS), prompt)
    cacheable = plan.prefix_tokens >= _CACHE_MIN[model]
    u = st.rng.random(k)
    anthropic = _ANTHROPIC[model] & cacheable
    cache_read = np.where(anthropic & (u < ANTHROPIC_CACHE_READ), plan.prefix_tokens, 0)
    openai_read = _OPENAI[model] & cacheable & (u < OPENAI_CACHE_READ)
    cache_read = np.where(openai_read, plan.prefix_tokens // 128 * 128, cache_read)
    write_band = (u >= ANTHROPIC_CACHE_READ) & (u < ANTHROPIC_CACHE_READ + ANTHROPIC_CACHE_WRITE)
    cache_write = np.where(anthropic & write_band, plan.prefix_tokens, 0)

    hit_limit = st.rng.random(k) < LENGTH_FINISH_SHARE
    cap = plan.max_output_tokens[rows]
    visible = np.where(hit_limit, cap, np.minimum(plan.output_tokens[rows], cap))
    reasoning = np.where(_REASONING[model], np.maximum(64, st.lognormal(1200.0, 0.6, k)), 0).astype(np.int64)
    output = visible + reasoning
    finish_reason = _FINISH[model, np.where(hit_limit, 1, np.where(plan.tool_call[rows], 2, 0))]

    ttft = st.lognormal(_TTFT[model], 0.35, k) + (prompt - cache_read) / _PREFILL[model] * 1000.0
    ttft = np.round(ttft * _ttft_factor(st, req[rows], model), 3)
    generation = (output - 1) / _TPS[model] * 1000.0 * st.lognormal(1.0, 0.15, k) + st.rng.uniform(2.0, 15.0, k)
    duration: npt.NDArray[np.float64] = ttft + generation
    st.sink.add(
        req[rows],
        "llm",
        start,
        duration,
        parent[rows],
        status="ok",
        model_response=_responses(st, req[rows], model),
        input_tokens=prompt,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        ttft_ms=ttft,
        finish_reason=finish_reason,
        **_subset(common, mask),
    )
    return start + duration


def _ttft_factor(st: Stage, req: np.ndarray, model: np.ndarray) -> float | npt.NDArray[np.float64]:
    """A slow provider/endpoint: its time to first token multiplied during the incident."""
    factor = st.incident.effects.ttft_factor
    if factor == 1.0 or not st.incident.any:
        return 1.0
    return np.where(st.incident.calls(req, model), factor, 1.0)


def _responses(st: Stage, req: np.ndarray, model: np.ndarray) -> npt.NDArray[np.object_]:
    """The versioned model name each call was answered by (a silent upgrade on affected calls)."""
    upgraded = st.incident.effects.model_response
    if upgraded is None or not st.incident.any:
        responses: npt.NDArray[np.object_] = _RESPONSE[model]
        return responses
    return np.where(st.incident.calls(req, model), upgraded, _RESPONSE[model]).astype(object)


def _fail(
    st: Stage,
    req: np.ndarray,
    parent: np.ndarray,
    rows: np.ndarray,
    start: np.ndarray,
    code: np.ndarray,
    attempt: int,
    common: dict[str, Column],
    mask: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Failed attempts (nothing billed); returns (end, wait before the next attempt) in ms."""
    k = len(rows)
    limited, timed_out, context = code == _RATE_LIMITED, code == _TIMEOUT, code == _CONTEXT_EXCEEDED
    duration = np.select(
        [limited, timed_out, context],
        [st.lognormal(120.0, 0.5, k), np.full(k, CLIENT_TIMEOUT_MS), st.lognormal(150.0, 0.4, k)],
        st.lognormal(400.0, 0.7, k),
    )
    statuses = np.select([limited, context], [429, 400], st.rng.choice(SERVER_ERROR_STATUSES, k)).astype(object)
    statuses[timed_out] = None
    retry_after = np.ceil(st.lognormal(2.5, 0.6, k))
    retry_after_s = retry_after.astype(object)
    retry_after_s[~limited] = None
    exponential = 500.0 * 2**attempt * st.rng.uniform(0.5, 1.5, k)
    backoff = np.where(limited, retry_after * 1000.0, np.where(context, st.rng.uniform(5.0, 20.0, k), exponential))
    st.sink.add(
        req[rows],
        "llm",
        start,
        duration,
        parent[rows],
        status="error",
        error_type=_ERROR_TYPES[code],
        http_status=statuses,
        retry_after_s=retry_after_s,
        input_tokens=0,
        output_tokens=0,
        **_subset(common, mask),
    )
    return start + duration, backoff
