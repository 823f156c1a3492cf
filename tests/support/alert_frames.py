"""Synthetic MinuteFigures for the alerting tests (builders shared by the alerting tests).

Frames have exactly the columns of spanline.windows.merger.MinuteFigures: grain keys, counters, maps as dicts and DDSketch
columns, with Poisson noise around configurable rates, so the evaluator sees what the stream
windows produce. ``Knobs`` set the rates; ``where`` limits an incident to some groups.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pandas as pd
from ddsketch import DDSketch

from tests.support import window_expectations as expect

TENANTS = ("acme", "globex")
FEATURES = {"support-chat": "chat", "code-agent": "agent"}
MODELS = (("openai", "gpt-4o-mini", "small"), ("anthropic", "claude-3-5-sonnet", "large"))
#: The MinuteFigures columns, from the window tests' one definition of the grain.
COUNTS = (*expect.COUNTS, *expect.SUMS)
MAPS = tuple(expect.MAPS)
SKETCHES = ("duration_ms_sketch", "ttft_ms_sketch", "tpot_ms_sketch", "input_tokens_sketch")
PRICE_PER_OUTPUT_TOKEN = {"small": 0.6e-6, "large": 15e-6}


@dataclass(frozen=True)
class Knobs:
    requests: float = 120.0  # per tenant × feature and minute
    cache_hit_rate: float = 0.35
    large_share: float = 0.25
    error_rate: float = 0.01
    error_type: str = "server_error"
    rate_limited: float = 0.004
    ttft_ms: float = 450.0
    input_tokens: float = 2000.0
    output_tokens: float = 300.0
    tool_error_rate: float = 0.02
    failing_tool: str = "search_web"
    steps_per_trace: float = 3.0
    eval_pass: float = 0.9
    hallucination: float = 0.05
    recall: float = 0.93
    mismatch_share: float = 0.0
    context_share: float = 0.0001
    model_response: str = ""  # '' = the usual versioned name
    prompt_version: str = "v6"


def _dims(tenant: str, feature: str, provider: str, model: str, kind: str) -> dict[str, str]:
    return {
        "tenant_id": tenant,
        "service": FEATURES[feature],
        "feature": feature,
        "provider": provider,
        "model_requested": model,
        "route": f"{feature}:{model}" if model else "",
        "kind": kind,
    }


def _sketch(rng: np.random.Generator, median: float, count: float, sigma: float = 0.35) -> DDSketch | None:
    if count < 1:
        return None
    sketch = DDSketch(0.01)
    samples = median * np.exp(rng.normal(0.0, sigma, 40))
    for value in samples:
        sketch.add(float(value), float(count) / len(samples))
    return sketch


def minute_frame(
    minute: datetime,
    rng: np.random.Generator,
    knobs: Knobs = Knobs(),
    where: dict[str, str] | None = None,
    incident: Knobs | None = None,
) -> pd.DataFrame:
    """One minute's frame; groups matching ``where`` use ``incident`` knobs instead of ``knobs``."""
    rows: list[dict] = []
    for tenant in TENANTS:
        for feature in FEATURES:
            for provider, model, tier in MODELS:
                k = _choose(knobs, incident, where, tenant, feature, provider, model)
                rows.append(_llm_row(rng, k, tenant, feature, provider, model, tier))
            k = _choose(knobs, incident, where, tenant, feature, "", "")
            rows.extend(_support_rows(rng, k, tenant, feature))
    frame = pd.DataFrame(rows)
    for name in COUNTS:
        frame[name] = frame.get(name, 0)
        frame[name] = frame[name].fillna(0)
    for name in (*MAPS, *SKETCHES):
        if name not in frame:
            frame[name] = None
        frame[name] = [
            value if isinstance(value, (dict, DDSketch)) else ({} if name in MAPS else None) for value in frame[name]
        ]
    frame["minute"] = pd.Timestamp(minute)
    return frame


def _choose(
    knobs: Knobs,
    incident: Knobs | None,
    where: dict[str, str] | None,
    tenant: str,
    feature: str,
    provider: str,
    model: str,
) -> Knobs:
    if incident is None:
        return knobs
    values = {"tenant_id": tenant, "feature": feature, "provider": provider, "model_requested": model}
    if where and any(values.get(k) not in (v, "") for k, v in where.items()):
        return knobs
    return incident


def _llm_row(rng, k: Knobs, tenant, feature, provider, model, tier) -> dict:
    share = k.large_share if tier == "large" else 1 - k.large_share
    calls = int(rng.poisson(max(k.requests * (1 - k.cache_hit_rate) * 1.5 * share, 0.1)))
    errors = int(rng.binomial(calls, min(k.error_rate, 1)))
    limited = int(rng.binomial(calls, k.rate_limited))
    output = int(rng.poisson(max(k.output_tokens, 1) * max(calls, 0)))
    cost = output * PRICE_PER_OUTPUT_TOKEN[tier] * 1.5
    context = int(rng.binomial(calls, k.context_share))
    version = k.model_response or f"{model}-2024-08-06"
    slow = 1.0 if provider == "openai" else 1.3
    return {
        **_dims(tenant, feature, provider, model, "llm"),
        "spans": calls,
        "llm_calls": calls,
        "errors": errors + limited,
        "rate_limited": limited,
        "retries": limited,
        "first_attempt_errors": errors + limited,
        "first_attempt_rate_limited": limited,
        "input_tokens": int(k.input_tokens * calls),
        "output_tokens": output,
        "cost_usd": cost,
        "context_truncations": context,
        "context_length_errors": 0,
        "errors_by_type": {k.error_type: errors, "rate_limited": limited} if errors + limited else {},
        "llm_calls_by_tier": {tier: calls},
        "cost_by_tier": {tier: cost},
        "llm_calls_by_reason": {"default" if tier == "small" else "escalation": calls},
        "responses_by_model": {version: calls} if calls else {},
        "cost_by_prompt": {f"{feature}@{k.prompt_version}": cost} if calls else {},
        "ttft_ms_sketch": _sketch(rng, k.ttft_ms * slow, calls),
        "duration_ms_sketch": _sketch(rng, k.ttft_ms * slow * 4, calls),
        "tpot_ms_sketch": _sketch(rng, 20.0, calls),
        "input_tokens_sketch": _sketch(rng, k.input_tokens, calls, 0.5),
    }


def _support_rows(rng, k: Knobs, tenant, feature) -> list[dict]:
    requests = int(rng.poisson(k.requests))
    lookups = requests
    hits = int(rng.binomial(lookups, k.cache_hit_rate))
    agent = feature == "code-agent"
    tools = int(rng.poisson(requests * 1.5)) if agent else 0
    tool_errors = int(rng.binomial(tools, k.tool_error_rate))
    steps = int(rng.poisson(requests * k.steps_per_trace)) if agent else 0
    evals = int(rng.poisson(requests * 0.5))
    halluc_evals = evals // 2
    recall_evals = 1
    retrievals = 0 if agent else requests
    mismatches = int(rng.binomial(retrievals, k.mismatch_share))
    other_tool = "sql_query" if k.failing_tool != "sql_query" else "search_web"
    failing = round(tool_errors * 0.9)
    return [
        {
            **_dims(tenant, feature, "", "", "request"),
            "spans": requests,
            "requests": requests,
            "successful_requests": requests,
            "agent_steps": 0,
            "duration_ms_sketch": _sketch(rng, k.ttft_ms * 3, requests),
        },
        {
            **_dims(tenant, feature, "", "", "cache"),
            "spans": lookups,
            "cache_lookups": lookups,
            "cache_hits": hits,
            "cache_lookups_by_layer": {"exact": lookups // 2, "semantic": lookups - lookups // 2},
            "cache_hits_by_layer": {"exact": hits // 2, "semantic": hits - hits // 2},
        },
        {
            **_dims(tenant, feature, "", "", "tool"),
            "spans": tools,
            "tool_calls": tools,
            "tool_errors": tool_errors,
            "errors": tool_errors,
            "first_attempt_errors": tool_errors,
            "errors_by_type": {"timeout": tool_errors} if tool_errors else {},
            "tool_calls_by_tool": {k.failing_tool: tools // 2, other_tool: tools - tools // 2} if tools else {},
            "tool_errors_by_tool": (
                {k.failing_tool: failing, other_tool: tool_errors - failing} if tool_errors else {}
            ),
        },
        {**_dims(tenant, feature, "", "", "agent_step"), "spans": steps, "agent_steps": steps},
        {
            **_dims(tenant, feature, "", "", "eval"),
            "spans": evals + recall_evals,
            "evals": evals + recall_evals,
            "evals_passed": int(rng.binomial(evals, k.eval_pass)) + recall_evals,
            "hallucination_evals": halluc_evals,
            "hallucinations": int(rng.binomial(halluc_evals, k.hallucination)),
            "recall_evals": recall_evals,
            "recall_sum": (recall := float(rng.binomial(5, k.recall) / 5)),  # drawn here: later draws stay as they were
            "recall_evals_by_index": {f"{tenant}-docs": recall_evals},
            "recall_sum_by_index": {f"{tenant}-docs": recall},
        },
        {
            **_dims(tenant, feature, "", "", "retrieval"),
            "spans": retrievals,
            "retrievals": retrievals,
            "embedding_mismatches": mismatches,
        },
    ]


def with_knobs(base: Knobs, **changes: object) -> Knobs:
    return replace(base, **changes)


def hour_frame(hour: datetime, rng: np.random.Generator, knobs: Knobs = Knobs()) -> pd.DataFrame:
    """One closed hour, rollup-shaped (an ``hour`` column), as bootstrap or learn_hours take it."""
    frame = minute_frame(hour, rng, replace(knobs, requests=knobs.requests * 60))
    return frame.drop(columns="minute").assign(hour=pd.Timestamp(hour))


def diurnal(base: Knobs, when: datetime, rng: np.random.Generator) -> Knobs:
    """Traffic following the day (±30 % around the mean, peak 15:00 UTC) with 10 % noise."""
    shape = 1 + 0.3 * np.cos(2 * np.pi * (when.hour + when.minute / 60 - 15) / 24)
    return replace(base, requests=base.requests * shape * float(np.exp(rng.normal(0, 0.1))))
