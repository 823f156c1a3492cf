"""The diagnosis every page carries: which runbook branch the data points to, with numbers.

A diagnosis compares the incident window with a reference period from before it (the minute
frames 60–120 minutes ago, or whatever precedes the incident window after a fresh start),
restricted to the alert's scope, and breaks the change down by the dimensions the runbook
branches on. The incident window is the rule's own window (the minutes whose figures fired it),
capped at the last hour for day-long windows. Figures are per-minute averages, so periods of
different length compare directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
from ddsketch import DDSketch

from spanline.alerts.baselines import Family, merged, quantile
from spanline.alerts.conditions import rate_increase_z, window_length
from spanline.alerts.rules import Rule

if TYPE_CHECKING:
    from spanline.alerts.evaluator import Evaluator

Frames = list[tuple[datetime, pd.DataFrame]]
#: A metric's diagnosis: (runbook branch, details) from the periods, the rule, its scope and the evaluator.
Handler = Callable[["Periods", Rule, dict[str, str], "Evaluator"], tuple[str, dict[str, Any]]]
#: Longest incident window the diagnosis reads (the frames hold over two hours: it and its reference).
CURRENT_MAX = timedelta(minutes=60)
REFERENCE = (timedelta(minutes=120), timedelta(minutes=60))
CONTRIBUTOR_DIMS = ("tenant_id", "feature", "model_requested")
#: Standard errors a traffic rise must reach to be a surge (see rate_increase_z).
SURGE_MIN_Z = 3.0


class Periods:
    """The incident window and the reference period, as scoped frames and minute counts."""

    def __init__(self, frames: Frames, scope: dict[str, str], now: datetime, window: timedelta) -> None:
        current_start = now - min(window, CURRENT_MAX)
        reference = [(m, f) for m, f in frames if now - REFERENCE[0] <= m < now - REFERENCE[1]]
        if not reference:
            reference = [(m, f) for m, f in frames if m < current_start][-60:]
        current = [(m, f) for m, f in frames if current_start <= m < now]
        self.at, self.window = now, window
        self.now, self.before = _scoped(current, scope), _scoped(reference, scope)
        self.now_minutes, self.before_minutes = max(len(current), 1), max(len(reference), 1)

    def rate(self, column: str, kinds: tuple[str, ...] | None = None) -> tuple[float, float]:
        """Per-minute sum of a counter in (now, before)."""
        return (
            _sum(self.now, column, kinds) / self.now_minutes,
            _sum(self.before, column, kinds) / self.before_minutes,
        )

    def ratio(self, num: str, den: str, kinds: tuple[str, ...] | None = None) -> tuple[float, float]:
        return (
            _div(_sum(self.now, num, kinds), _sum(self.now, den, kinds)),
            _div(_sum(self.before, num, kinds), _sum(self.before, den, kinds)),
        )

    def map_rate(self, column: str, kinds: tuple[str, ...] | None = None) -> tuple[dict[str, float], dict[str, float]]:
        return (
            _map_sum(self.now, column, kinds, self.now_minutes),
            _map_sum(self.before, column, kinds, self.before_minutes),
        )

    def percentile(self, column: str, q: float, kinds: tuple[str, ...] | None = None) -> tuple[float, float]:
        return (_quantile(self.now, column, q, kinds), _quantile(self.before, column, q, kinds))

    def by(self, dims: list[str], column: str, kinds: tuple[str, ...] | None = None) -> pd.DataFrame:
        """Per-minute ``column`` per group of ``dims``: columns now, before, delta."""
        now = _rows(self.now, kinds).groupby(dims)[column].sum() / self.now_minutes if column in self.now else None
        before = (
            _rows(self.before, kinds).groupby(dims)[column].sum() / self.before_minutes
            if column in self.before
            else None
        )
        table = pd.DataFrame({"now": now, "before": before}).fillna(0.0)
        table["delta"] = table["now"] - table["before"]
        return table


def diagnose(
    rule: Rule,
    scope: dict[str, str],
    frames: Frames,
    now: datetime,
    figures: dict[str, float],
    evaluator: Evaluator,
    window: timedelta | None = None,
) -> tuple[str, dict[str, Any]]:
    """(runbook branch, details) for a rule that starts firing on ``scope`` at ``now``, over the
    window whose figures (``figures``) fired it (``window``: a burn-rate tier's long window; by
    default the rule's)."""
    periods = Periods(frames, scope, now, window or window_length(rule, now))
    handler = _HANDLERS.get(rule.metric, _generic)
    branch, details = handler(periods, rule, scope, evaluator)
    details = {
        "branch": branch,
        **details,
        "value": _clean(figures.get("value")),
        "threshold": _clean(figures.get("threshold")),
        "baseline": _clean(figures.get("baseline")),
        "window_minutes": periods.now_minutes,
        "reference_minutes": periods.before_minutes,
    }
    return branch, _rounded(details)


# --- cost
def _cost(periods: Periods, _rule: Rule, _scope: dict[str, str], _ev: Evaluator) -> tuple[str, dict[str, Any]]:
    """Spend = requests × LLM calls per request × cost per call; cost per call splits into the
    tier mix and the spend within tiers (output length). Log-ratios add up to the spend change,
    so each factor's share of it is exact; the largest rising factor is the branch. When it is
    the tier mix, the branch names the routing reason that gained share (``routing_escalation``,
    ``routing_fallback``, ``routing_canary``; ``routing_mix`` when none did), as the routing
    rule's page does: a routing shift that moves spend is a cost page with the routing branch."""
    spend = periods.rate("cost_usd")
    requests = periods.rate("requests", ("request",))
    calls = periods.rate("spans", ("llm",))
    hit_rate = periods.ratio("cache_hits", "cache_lookups", ("cache",))
    output = periods.ratio("output_tokens", "spans", ("llm",))
    calls_by_tier, cost_by_tier = (
        periods.map_rate("llm_calls_by_tier", ("llm",)),
        periods.map_rate("cost_by_tier", ("llm",)),
    )
    factors = {
        "traffic_volume": _log_ratio(requests) if requests[1] > 0 and requests[0] > 0 else _log_ratio(calls),
        "cache_hit_rate": _log_ratio((_div(calls[0], requests[0]), _div(calls[1], requests[1]))),
    }
    per_call = _log_ratio((_div(spend[0], calls[0]), _div(spend[1], calls[1])))
    mix = _mix_effect(calls_by_tier, cost_by_tier)
    factors["routing_mix"] = mix
    factors["output_length"] = per_call - mix
    if not hit_rate[0] < hit_rate[1]:  # more calls per request without a cache drop (or no cache): traffic shape
        factors["traffic_volume"] += factors.pop("cache_hit_rate")
        factors["cache_hit_rate"] = 0.0
    total = sum(factors.values())
    branch = max(factors, key=lambda name: factors[name])
    if branch == "routing_mix":
        branch = _routing_reason(periods, calls)
    tiers = sorted(set(calls_by_tier[0]) | set(calls_by_tier[1]))
    details = {
        "spend_per_min_usd": _pair(spend),
        "requests_per_min": _pair(requests),
        "llm_calls_per_min": _pair(calls),
        "cache_hit_rate": _pair(hit_rate),
        "mean_output_tokens": _pair(output),
        "tier_share": {
            t: _pair((_div(calls_by_tier[0].get(t, 0), calls[0]), _div(calls_by_tier[1].get(t, 0), calls[1])))
            for t in tiers
        },
        "share_by_reason": _reason_shares(periods, calls),
        "spend_change_share": {name: _div(value, total) if total else 0.0 for name, value in factors.items()},
        "top_contributors": _top_contributors(periods),
    }
    return branch, details


def _mix_effect(
    calls: tuple[dict[str, float], dict[str, float]], cost: tuple[dict[str, float], dict[str, float]]
) -> float:
    """ln(cost per call at the reference tier prices with today's tier mix / reference cost per call)."""
    now_calls, before_calls = calls
    before_total = sum(before_calls.values())
    now_total = sum(now_calls.values())
    if not before_total or not now_total:
        return 0.0
    price = {t: _div(cost[1].get(t, 0.0), n) for t, n in before_calls.items() if n}
    reference = sum(cost[1].values()) / before_total
    mixed = sum(now_calls.get(t, 0.0) / now_total * p for t, p in price.items())
    mixed += sum(n / now_total * reference for t, n in now_calls.items() if t not in price)
    return math.log(mixed / reference) if mixed > 0 and reference > 0 else 0.0


def _top_contributors(periods: Periods) -> dict[str, Any]:
    """Per dimension (and prompt version), the key whose spend grew most and its share of the growth."""
    total = periods.rate("cost_usd")
    growth = total[0] - total[1]
    top: dict[str, Any] = {}
    for dim in CONTRIBUTOR_DIMS:
        table = periods.by([dim], "cost_usd")
        if not table.empty:
            key = table["delta"].idxmax()
            top[dim] = {
                "key": str(key),
                "spend_per_min_usd": _pair((table.at[key, "now"], table.at[key, "before"])),
                "share_of_growth": _div(table.at[key, "delta"], growth),
            }
    prompts_now, prompts_before = periods.map_rate("cost_by_prompt")
    deltas = {p: prompts_now.get(p, 0.0) - prompts_before.get(p, 0.0) for p in set(prompts_now) | set(prompts_before)}
    if deltas:
        key = max(deltas, key=lambda p: deltas[p])
        top["prompt_version"] = {
            "key": key,
            "spend_per_min_usd": _pair((prompts_now.get(key, 0.0), prompts_before.get(key, 0.0))),
            "share_of_growth": _div(deltas[key], growth),
        }
    return top


# --- latency
def _latency(periods: Periods, _rule: Rule, _scope: dict[str, str], _ev: Evaluator) -> tuple[str, dict[str, Any]]:
    """Throughput (queueing) vs long inputs (p99 input tokens) vs one provider/model."""
    ttft = periods.percentile("ttft_ms_sketch", 0.95, ("llm",))
    calls = periods.rate("spans", ("llm",))
    p99_input = periods.percentile("input_tokens_sketch", 0.99, ("llm",))
    providers = _provider_latency(periods)
    scores = {
        "throughput": _ratio_of(calls) - 1,
        "long_inputs": _ratio_of(p99_input) - 1,
        "provider_endpoint": providers[0]["excess"] if providers else 0.0,
    }
    branch = max(scores, key=lambda name: scores[name])
    return branch, {
        "ttft_p95_ms": _pair(ttft),
        "llm_calls_per_min": _pair(calls),
        "input_tokens_p99": _pair(p99_input),
        "slowest_provider_model": providers[0] if providers else None,
        "scores": scores,
    }


def _provider_latency(periods: Periods) -> list[dict[str, Any]]:
    """Provider/model pairs by how much their p95 TTFT rose beyond the median rise of the others
    (beyond 1.0 when alone): one slow provider stands out, a general slowdown does not."""
    rows = []
    for key, group in _rows(periods.now, ("llm",)).groupby(["provider", "model_requested"]):
        before = _rows(periods.before, ("llm",))
        before = before[(before["provider"] == key[0]) & (before["model_requested"] == key[1])]
        now_p95, before_p95 = _quantile(group, "ttft_ms_sketch", 0.95), _quantile(before, "ttft_ms_sketch", 0.95)
        rows.append(
            {
                "provider": key[0],
                "model_requested": key[1],
                "ttft_p95_ms": _pair((now_p95, before_p95)),
                "rise": _ratio_of((now_p95, before_p95)),
            }
        )
    if not rows:
        return []
    for row in rows:
        others = sorted(r["rise"] for r in rows if r is not row and not math.isnan(r["rise"]))
        typical = others[len(others) // 2] if others else 1.0
        row["excess"] = 0.0 if math.isnan(row["rise"]) else row["rise"] - max(typical, 1.0)
    return sorted(rows, key=lambda r: -r["excess"])


# --- errors and rate limits
def _errors(periods: Periods, _rule: Rule, _scope: dict[str, str], _ev: Evaluator) -> tuple[str, dict[str, Any]]:
    types = periods.map_rate("errors_by_type", ("llm",))[0]
    table = periods.by(["provider", "model_requested"], "errors", ("llm",))
    total = max(sum(types.values()), 1e-12)
    client_side = sum(types.get(t, 0.0) for t in ("context_length_exceeded", "invalid_output", "content_filter"))
    branch = "client_errors" if client_side / total > 0.5 else "provider_errors"
    errors, rate_limited, calls, retries = (
        periods.rate(column, ("llm",))
        for column in ("first_attempt_errors", "first_attempt_rate_limited", "spans", "retries")
    )
    # the rule's own metric: first attempts failing other than by 429 (the rate-limiting rule's)
    error_rate = tuple(_div(e - r, c - n) for e, r, c, n in zip(errors, rate_limited, calls, retries, strict=True))
    return branch, {
        "error_rate": _pair((error_rate[0], error_rate[1])),
        "retry_amplification": _pair((_div(calls[0], calls[0] - retries[0]), _div(calls[1], calls[1] - retries[1]))),
        "errors_by_type_per_min": types,
        "top_error_type": max(types, key=lambda t: types[t]) if types else None,
        "worst": _top_rows(table, "now"),
    }


def _rate_limits(periods: Periods, _rule: Rule, _scope: dict[str, str], _ev: Evaluator) -> tuple[str, dict[str, Any]]:
    calls = periods.rate("spans", ("llm",))
    retries = periods.ratio("retries", "spans", ("llm",))
    # a surge is more first attempts; retries of the 429s themselves are the retry_storm branch
    retried = periods.rate("retries", ("llm",))
    first_attempts = (calls[0] - retried[0], calls[1] - retried[1])
    traffic = _ratio_of(first_attempts)
    # a surge is 1.5x the reference traffic AND 3 standard errors above it (overdispersed Poisson
    # counts): at a few calls a minute, 1.5x an hour earlier happens by chance
    surge_z = rate_increase_z(
        first_attempts[0] * periods.now_minutes,
        periods.now_minutes,
        first_attempts[1] * periods.before_minutes,
        periods.before_minutes,
        _dispersion(periods.before, ("llm",)),
    )
    amplification = (_amplification(retries[0]), _amplification(retries[1]))
    if traffic >= 1.5 and surge_z >= SURGE_MIN_Z:
        branch = "traffic_surge"
    elif amplification[0] >= 1.2 and amplification[0] > amplification[1] * 1.1:
        branch = "retry_storm"
    else:
        branch = "provider_quota"
    return branch, {
        "rate_limited_rate": _pair(
            (
                _div(periods.rate("first_attempt_rate_limited", ("llm",))[0], first_attempts[0]),
                _div(periods.rate("first_attempt_rate_limited", ("llm",))[1], first_attempts[1]),
            )
        ),
        "llm_calls_per_min": _pair(calls),
        "first_attempts_per_min": _pair(first_attempts),
        "traffic_change_z": surge_z,
        "retry_amplification": _pair(amplification),
        "worst": _top_rows(periods.by(["provider", "model_requested"], "rate_limited", ("llm",)), "now"),
    }


def _headroom(periods: Periods, _rule: Rule, _scope: dict[str, str], _ev: Evaluator) -> tuple[str, dict[str, Any]]:
    """Usage of a provider limit = calls × tokens per call; retries are calls too. The factor
    that grew is the branch: more first attempts, longer calls, or retries; else slow growth."""
    calls = periods.rate("spans", ("llm",))
    retried = periods.rate("retries", ("llm",))
    tokens = periods.rate("input_tokens", ("llm",))
    output = periods.rate("output_tokens", ("llm",))
    tokens = (tokens[0] + output[0], tokens[1] + output[1])
    per_call = (_div(tokens[0], calls[0]), _div(tokens[1], calls[1]))
    retry_share = periods.ratio("retries", "spans", ("llm",))
    if _ratio_of((calls[0] - retried[0], calls[1] - retried[1])) >= 1.5:
        branch = "traffic_surge"
    elif _ratio_of(per_call) >= 1.3:
        branch = "longer_calls"
    elif retry_share[0] >= 0.1 and retry_share[0] > 1.5 * retry_share[1]:
        branch = "retry_storm"
    else:
        branch = "steady_growth"
    features = periods.by(["feature"], "input_tokens", ("llm",))
    features["now"] += periods.by(["feature"], "output_tokens", ("llm",))["now"].reindex(features.index, fill_value=0)
    return branch, {
        "tokens_per_min": _pair(tokens),
        "llm_calls_per_min": _pair(calls),
        "tokens_per_call": _pair(per_call),
        "retry_share": _pair(retry_share),
        "rate_limited_rate": _pair(periods.ratio("rate_limited", "spans", ("llm",))),
        "top_features": _top_rows(features, "now"),
    }


# --- index builds
def _index_build(periods: Periods, _rule: Rule, scope: dict[str, str], _ev: Evaluator) -> tuple[str, dict[str, Any]]:
    """Documents and chunks per build of the index now vs before, and the tenant's canary recall
    beside them: fewer documents = the corpus shrank; the same documents in fewer chunks = the
    chunker or parser changed."""
    index = scope.get("index_name", "")

    def per_build(column: str) -> tuple[float, float]:
        sums, builds = (
            periods.map_rate(column, ("index_build",)),
            periods.map_rate("index_builds_by_index", ("index_build",)),
        )
        return (
            _div(sums[0].get(index, 0.0), builds[0].get(index, 0.0)),
            _div(sums[1].get(index, 0.0), builds[1].get(index, 0.0)),
        )

    documents, chunks = per_build("index_documents_by_index"), per_build("index_chunks_by_index")
    if math.isnan(documents[1]) and math.isnan(chunks[1]):
        branch = "no_reference"
    elif _ratio_of(documents) < 0.8:
        branch = "documents_dropped"
    else:
        branch = "chunking_changed"
    return branch, {
        "index_name": index,
        "documents_per_build": _pair(documents),
        "chunks_per_build": _pair(chunks),
        "chunks_per_document": _pair((_div(chunks[0], documents[0]), _div(chunks[1], documents[1]))),
        "recall_at_k": _pair(periods.ratio("recall_sum", "recall_evals", ("eval",))),
    }


# --- user outcomes
def _outcomes(periods: Periods, _rule: Rule, _scope: dict[str, str], _ev: Evaluator) -> tuple[str, dict[str, Any]]:
    """Escalations and negative feedback are symptoms: the branch is the cause the data shows,
    failing requests first, then worse answers (the online evals), else none in the figures."""
    errors = periods.ratio("errors", "requests", ("request",))
    evals = periods.ratio("evals_passed", "evals", ("eval",))
    if errors[0] - errors[1] >= 0.02 and _ratio_of(errors) >= 1.5:
        branch = "failing_requests"
    elif evals[1] - evals[0] >= 0.03:
        branch = "answer_quality"
    else:
        branch = "no_signal_found"
    escalations = periods.map_rate("escalations_by_reason", ("escalation",))
    feedback = periods.map_rate("feedback_by_name", ("feedback",))
    positive = periods.map_rate("positive_feedback_by_name", ("feedback",))
    return branch, {
        "requests_per_min": _pair(periods.rate("requests", ("request",))),
        "escalations_per_min": _pair((sum(escalations[0].values()), sum(escalations[1].values()))),
        "escalation_reasons_per_min": escalations[0],
        "positive_feedback_rate": _pair(
            (
                _div(sum(positive[0].values()), sum(feedback[0].values())),
                _div(sum(positive[1].values()), sum(feedback[1].values())),
            )
        ),
        "request_error_rate": _pair(errors),
        "eval_pass_rate": _pair(evals),
    }


# --- stage budgets
def _stage(periods: Periods, rule: Rule, scope: dict[str, str], ev: Evaluator) -> tuple[str, dict[str, Any]]:
    """The stage against its requests: its p95, its share of the requests' time (summed durations
    of the stage / of the root requests, same tenant and feature) and its calls per request. Read
    from the evaluator's minute series of this rule and of ``latency_p95_ms`` (the minute frames
    kept for diagnoses carry no duration sketches)."""
    stage_family = Family(rule.metric, None, tuple(rule.scope))
    request_family = Family("latency_p95_ms", None, ("tenant_id", "feature"))
    request_scope = {d: v for d, v in scope.items() if d != "kind"}
    reference = (periods.at - REFERENCE[1], REFERENCE[0] - REFERENCE[1])
    if _sketch_of(ev, stage_family, scope, *reference) is None:  # a fresh start: the minutes before the window
        reference = (periods.at - min(periods.window, CURRENT_MAX), REFERENCE[0] - REFERENCE[1])
    periods_now_before = ((periods.at, min(periods.window, CURRENT_MAX)), reference)
    stage = [_sketch_of(ev, stage_family, scope, end, length) for end, length in periods_now_before]
    requests = [_sketch_of(ev, request_family, request_scope, end, length) for end, length in periods_now_before]
    share = tuple(_div(_sum_of(s), _sum_of(r)) for s, r in zip(stage, requests, strict=True))
    calls = tuple(_div(_count_of(s), _count_of(r)) for s, r in zip(stage, requests, strict=True))
    if _ratio_of((calls[0], calls[1])) >= 1.5:
        branch = "more_calls_per_request"
    elif _ratio_of((share[0], share[1])) >= 1.25:
        branch = "stage_dominates"
    else:
        branch = "everything_slower"
    return branch, {
        "stage": scope.get("kind"),
        "stage_p95_ms": _pair((quantile(stage[0], 0.95), quantile(stage[1], 0.95))),
        "request_p95_ms": _pair((quantile(requests[0], 0.95), quantile(requests[1], 0.95))),
        "share_of_request_time": _pair((share[0], share[1])),
        "stage_calls_per_request": _pair((calls[0], calls[1])),
    }


def _sketch_of(
    ev: Evaluator, family: Family, scope: dict[str, str], end: datetime, length: timedelta
) -> DDSketch | None:
    """A scope's merged sketch over [end - length, end) from the evaluator's series (None = none)."""
    if family not in ev.store.series:
        return None
    table = ev.store.window(family, end, length)
    if table.empty or "sketch" not in table:
        return None
    key = tuple(scope.get(d, "") for d in family.dims)
    rows = table.reset_index()
    chosen = rows[(rows[list(family.dims)].astype(str) == list(key)).all(axis=1)]
    return merged(list(chosen["sketch"])) if len(chosen) else None


def _sum_of(sketch: DDSketch | None) -> float:
    return float(sketch.sum) if sketch is not None else float("nan")


def _count_of(sketch: DDSketch | None) -> float:
    return float(sketch.count) if sketch is not None else float("nan")


# --- cache and routing
def _cache(periods: Periods, _rule: Rule, _scope: dict[str, str], _ev: Evaluator) -> tuple[str, dict[str, Any]]:
    lookups, hits = (
        periods.map_rate("cache_lookups_by_layer", ("cache",)),
        periods.map_rate("cache_hits_by_layer", ("cache",)),
    )
    layers = {}
    for layer in sorted(set(lookups[0]) | set(lookups[1])):
        layers[layer] = _pair(
            (
                _div(hits[0].get(layer, 0), lookups[0].get(layer, 0)),
                _div(hits[1].get(layer, 0), lookups[1].get(layer, 0)),
            )
        )
    drops = {layer: (pair["before"] or 0) - (pair["now"] or 0) for layer, pair in layers.items()}
    branch = f"{max(drops, key=lambda name: drops[name])}_layer" if drops else "unknown_layer"
    return branch, {
        "cache_hit_rate": _pair(periods.ratio("cache_hits", "cache_lookups", ("cache",))),
        "hit_rate_by_layer": layers,
        "lookups_per_min": _pair(periods.rate("cache_lookups", ("cache",))),
    }


def _routing(periods: Periods, rule: Rule, scope: dict[str, str], ev: Evaluator) -> tuple[str, dict[str, Any]]:
    """Which routing reason gained share: escalation, fallback (a failing primary), canary."""
    _, cost = _cost(periods, rule, scope, ev)  # its details carry each reason's share
    return _routing_reason(periods, periods.rate("spans", ("llm",))), cost


def _reason_shares(periods: Periods, calls: tuple[float, float]) -> dict[str, dict[str, float | None]]:
    """Each routing reason's share of the LLM calls, now and before."""
    reasons = periods.map_rate("llm_calls_by_reason", ("llm",))
    return {
        r: _pair((_div(reasons[0].get(r, 0), calls[0]), _div(reasons[1].get(r, 0), calls[1])))
        for r in sorted(set(reasons[0]) | set(reasons[1]))
    }


def _routing_reason(periods: Periods, calls: tuple[float, float]) -> str:
    """``routing_<reason>`` of the reason whose share of calls rose most; ``routing_mix`` without reasons."""
    gains = {r: (p["now"] or 0) - (p["before"] or 0) for r, p in _reason_shares(periods, calls).items()}
    return f"routing_{max(gains, key=lambda r: gains[r])}" if gains else "routing_mix"


# --- agents and tools
def _tools(periods: Periods, _rule: Rule, _scope: dict[str, str], _ev: Evaluator) -> tuple[str, dict[str, Any]]:
    errors_by_tool = periods.map_rate("tool_errors_by_tool", ("tool",))[0]
    calls_by_tool = periods.map_rate("tool_calls_by_tool", ("tool",))[0]
    types = periods.map_rate("errors_by_type", ("tool",))[0]
    total = sum(errors_by_tool.values())
    tool = max(errors_by_tool, key=lambda t: errors_by_tool[t]) if errors_by_tool else None
    share = _div(errors_by_tool.get(tool, 0.0), total) if tool else 0.0
    branch = "single_tool" if tool and share >= 0.6 else "all_tools"
    return branch, {
        "tool": tool,
        "tool_share_of_errors": share,
        "tool_error_rate": _div(errors_by_tool.get(tool, 0.0), calls_by_tool.get(tool, 0.0)) if tool else None,
        "top_error_type": max(types, key=lambda t: types[t]) if types else None,
        "errors_by_type_per_min": types,
        "steps_per_trace": _pair(periods.ratio("agent_steps", "requests", ("agent_step", "request"))),
    }


# --- quality and retrieval
def _quality(periods: Periods, _rule: Rule, _scope: dict[str, str], ev: Evaluator) -> tuple[str, dict[str, Any]]:
    recall = periods.ratio("recall_sum", "recall_evals", ("eval",))
    prompts = periods.map_rate("cost_by_prompt")
    new_prompts = sorted(set(prompts[0]) - set(prompts[1]))
    versions = periods.map_rate("responses_by_model", ("llm",))
    new_versions = sorted(set(versions[0]) - set(versions[1]))
    recall_drop = (recall[1] - recall[0]) if not (math.isnan(recall[0]) or math.isnan(recall[1])) else 0.0
    if recall_drop >= 0.1:
        branch = "retrieval_regression"
    elif new_prompts:
        branch = "prompt_change"
    elif new_versions:
        branch = "model_change"
    else:
        branch = "no_change_found"
    return branch, {
        "eval_pass_rate": _pair(periods.ratio("evals_passed", "evals", ("eval",))),
        "hallucination_rate": _pair(periods.ratio("hallucinations", "hallucination_evals", ("eval",))),
        "recall_at_k": _pair(recall),
        "new_prompt_versions": new_prompts,
        "new_model_versions": new_versions,
    }


def _index(periods: Periods, _rule: Rule, scope: dict[str, str], _ev: Evaluator) -> tuple[str, dict[str, Any]]:
    """Mismatched embeddings first, then an index that stopped answering, else a recall drop. A
    recall page is per index: its recall and retrievals are that index's (spans naming no index
    count under ''), and every index of the tenant is listed beside it, so one broken index
    reads apart from a tenant-wide drop."""
    mismatches = periods.rate("embedding_mismatches")
    index = scope.get("index_name")
    by_index = _recall_by_index(periods)
    retrievals = periods.rate("retrievals")  # the tenant's, when the canary names no index
    recall = periods.ratio("recall_sum", "recall_evals", ("eval",))
    if index:
        searched = periods.map_rate("retrievals_by_index", ("retrieval",))
        retrievals = (searched[0].get(index, 0.0), searched[1].get(index, 0.0))
    if index is not None:
        recall = by_index.get(index, (float("nan"), float("nan")))
    if mismatches[0] > 0:
        branch = "embedding_mismatch"
    elif retrievals[1] > 0 and retrievals[0] < 0.5 * retrievals[1]:
        branch = "empty_retrievals"
    else:
        branch = "recall_drop"
    return branch, {
        "embedding_mismatches_per_min": _pair(mismatches),
        "retrievals_per_min": _pair(retrievals),
        "recall_at_k": _pair(recall),
        **({"index_name": index} if index is not None else {}),
        "recall_at_k_by_index": {
            name: _pair(pair)
            for name, pair in sorted(by_index.items(), key=lambda item: -_drop(item[1]))  # worst drop first
        },
        "mismatch_by_feature": _top_rows(periods.by(["feature"], "embedding_mismatches"), "now"),
    }


def _recall_by_index(periods: Periods) -> dict[str, tuple[float, float]]:
    """Mean canary recall per index_name, (now, before), from the per-index maps."""
    evals = periods.map_rate("recall_evals_by_index", ("eval",))
    sums = periods.map_rate("recall_sum_by_index", ("eval",))
    names = sorted(set(evals[0]) | set(evals[1]))
    return {
        name: (
            _div(sums[0].get(name, 0.0), evals[0].get(name, 0.0)),
            _div(sums[1].get(name, 0.0), evals[1].get(name, 0.0)),
        )
        for name in names
    }


def _drop(pair: tuple[float, float]) -> float:
    """How far recall fell (now below before); 0 when either side is unknown."""
    now, before = pair
    return 0.0 if math.isnan(now) or math.isnan(before) else before - now


def _context(periods: Periods, _rule: Rule, _scope: dict[str, str], _ev: Evaluator) -> tuple[str, dict[str, Any]]:
    errors, truncations = periods.rate("context_length_errors", ("llm",)), periods.rate("context_truncations", ("llm",))
    branch = "context_errors" if errors[0] >= truncations[0] else "truncation"
    table = periods.by(["feature"], "context_length_errors", ("llm",))
    table["now"] += periods.by(["feature"], "context_truncations", ("llm",))["now"].reindex(table.index, fill_value=0)
    return branch, {
        "context_length_errors_per_min": _pair(errors),
        "truncations_per_min": _pair(truncations),
        "input_tokens_p99": _pair(periods.percentile("input_tokens_sketch", 0.99, ("llm",))),
        "top_feature": _top_rows(table, "now"),
    }


def _versions(periods: Periods, rule: Rule, scope: dict[str, str], ev: Evaluator) -> tuple[str, dict[str, Any]]:
    family = next((f for f in ev.keys if f.metric == rule.metric and f.dims == tuple(rule.scope)), None)
    new = ev.keys[family].new_keys(family.dims, periods.at, timedelta(days=1)) if family else pd.DataFrame()
    for dim, value in scope.items():
        if dim in new:
            new = new[new[dim] == value]
    versions = periods.map_rate("responses_by_model", ("llm",))
    return "new_model_version", {
        "new_model_responses": sorted(new["key"].astype(str)) if len(new) else [],
        "responses_per_min": versions[0],
        "responses_before_per_min": versions[1],
    }


def _generic(_periods: Periods, rule: Rule, _scope: dict[str, str], _ev: Evaluator) -> tuple[str, dict[str, Any]]:
    return rule.metric, {}


def _amplification(retry_share: float) -> float:
    """Calls per first attempt when ``retry_share`` of all calls are retries."""
    return 1 / (1 - retry_share) if retry_share < 1 else float("inf")


_HANDLERS: dict[str, Handler] = {
    "cost_usd": _cost,
    "cost_per_request_usd": _cost,
    "tier_share": _routing,
    "ttft_p95_ms": _latency,
    "latency_p95_ms": _latency,
    "error_rate": _errors,
    "rate_limited_rate": _rate_limits,
    "cache_hit_rate": _cache,
    "tool_error_rate": _tools,
    "eval_pass_rate": _quality,
    "hallucination_rate": _quality,
    "recall_at_k": _index,
    "embedding_mismatches": _index,
    "context_exhaustion_rate": _context,
    "new_model_versions": _versions,
    "stage_p95_ms": _stage,
    "index_documents": _index_build,
    "index_chunks": _index_build,
    "containment_rate": _outcomes,
    "positive_feedback_rate": _outcomes,
    "llm_tokens": _headroom,
    "llm_requests": _headroom,
}


# --- helpers
def _scoped(frames: Frames, scope: dict[str, str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame()
    frame = pd.concat([f for _, f in frames], ignore_index=True)
    for dim, value in scope.items():
        if dim in frame:
            frame = frame[frame[dim].astype(str) == value]
    return frame


def _rows(frame: pd.DataFrame, kinds: tuple[str, ...] | None) -> pd.DataFrame:
    if kinds is None or frame.empty or "kind" not in frame:
        return frame
    return frame[frame["kind"].isin(kinds)]


def _sum(frame: pd.DataFrame, column: str, kinds: tuple[str, ...] | None) -> float:
    if column not in frame:
        return 0.0
    return float(_rows(frame, kinds)[column].fillna(0).sum())


def _map_sum(frame: pd.DataFrame, column: str, kinds: tuple[str, ...] | None, minutes: int) -> dict[str, float]:
    totals: dict[str, float] = {}
    if column not in frame:
        return totals
    for entries in _rows(frame, kinds)[column]:
        for key, value in (entries or {}).items():
            totals[key] = totals.get(key, 0.0) + float(value)
    return {key: value / minutes for key, value in totals.items()}


def _quantile(frame: pd.DataFrame, column: str, q: float, kinds: tuple[str, ...] | None = None) -> float:
    if column not in frame:
        return float("nan")
    return quantile(merged(_rows(frame, kinds)[column]), q)


def _dispersion(frame: pd.DataFrame, kinds: tuple[str, ...] | None) -> float:
    """Variance / mean of the per-minute first attempts in ``frame`` (1 = Poisson; more when
    calls come in bursts); 1 when there are too few minutes to tell."""
    rows = _rows(frame, kinds)
    if rows.empty or "minute" not in rows or "retries" not in rows:
        return 1.0
    per_minute = (rows["spans"] - rows["retries"]).groupby(rows["minute"]).sum()
    mean = float(per_minute.mean())
    if len(per_minute) < 5 or mean <= 0:
        return 1.0
    return max(1.0, float(per_minute.var()) / mean)


def _div(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def _log_ratio(pair: tuple[float, float]) -> float:
    now, before = pair
    if not (now > 0 and before > 0):
        return 0.0
    return math.log(now / before)


def _ratio_of(pair: tuple[float, float]) -> float:
    now, before = pair
    return now / before if before and not math.isnan(before) and not math.isnan(now) else float("nan")


def _pair(pair: tuple[float, float]) -> dict[str, float | None]:
    return {"now": _clean(pair[0]), "before": _clean(pair[1])}


def _top_rows(table: pd.DataFrame, column: str, n: int = 3) -> list[dict[str, Any]]:
    if table.empty:
        return []
    top = table.sort_values(column, ascending=False).head(n).reset_index()
    return [
        {k: (_clean(v) if isinstance(v, float) else str(v)) for k, v in row.items()} for row in top.to_dict("records")
    ]


def _clean(value: float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) or math.isinf(number) else number


def _rounded(value: Any) -> Any:
    """JSON-friendly: floats to 6 significant digits, NaN to None, nested containers walked."""
    if isinstance(value, dict):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else float(f"{value:.6g}")
    return value
