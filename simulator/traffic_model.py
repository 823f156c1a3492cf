"""A second, independent traffic model: the alert evaluation's week of traffic.

Independent of simulator/workload.py on purpose (its own arrivals, features, models, lengths and
error mix), so the rules are judged on traffic they were not tuned on. It shares only the span
rendering (simulator/workload_spans.py: ``SpanSink``), so its spans are the canonical dicts the
receiver takes.

* **Arrivals**: a Cox process. Each minute's intensity is the mean rate × a diurnal curve
  (trough 04:00 UTC, peak 15:00) × a weekly curve (weekends at 55 %) × a gamma-distributed burst
  factor per 5 minutes (shape ``BURST_SHAPE``), so counts per minute are negative-binomial,
  overdispersed around the Poisson a naive model would draw.
* **Lengths**: prompts log-normal (chat grows with the turn), long documents Pareto
  (α = 1.5, 6k tokens and up, capped at the model's window), outputs log-normal.
* **Tenants** ∝ 1/(rank+1); each has three indexes (``kb``, ``contracts``, ``code``) with a
  recall@5 canary per index every minute.
* **Features**: multi-turn chat (exact cache, retrieval from ``kb``, one LLM call), long-document
  Q&A (retrieval from ``contracts``, one long-prompt call), a tool-using agent (1–6 planned steps, each an
  LLM call and a tool call; a failed tool call adds two steps). LLM calls fail at 0.8 % (5xx) and 0.25 % (429) per attempt; a failed
  attempt is retried once, then falls back to the other provider.

Generation is column-wise per block of minutes with one generator per (seed, block), so a block
is the same whatever the run length; overlays (simulator/traffic_overlays.py) change the
draws inside their windows. A call's knobs (errors, 429s, TTFT, model version, tool errors) are
read at the call's own start, so a 20-second 429 wall hits the calls made in those 20 seconds,
not every later step of an agent that arrived in them; a request's (traffic, routing, output
length, cache hits) at its arrival.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from spanline.simulator.traffic_overlays import Overlay, knob
from spanline.simulator.workload_spans import Column, RequestColumns, SpanSink, hex_ids

BLOCK_MINUTES = 10
BURST_SHAPE = 12.0  # gamma shape of the 5-minute burst factor: CV ≈ 29 %
WEEKEND_LEVEL = 0.55
FEATURES = ("chat", "long-doc", "agent")
FEATURE_SHARE = np.array([0.6, 0.15, 0.25])
SERVICES = np.array(["assistant", "documents", "agent"], dtype=object)
INDEXES = ("kb", "contracts", "code")
INDEX_FEATURE = {"kb": "chat", "contracts": "long-doc", "code": "agent"}
TOOLS = np.array(["search_web", "run_sql", "http_fetch"], dtype=object)
SERVER_ERROR = 0.008
RATE_LIMITED = 0.0025
TOOL_ERROR = 0.02
MAX_AGENT_STEPS = 12
EXACT_HIT = 0.18
CANARY_RECALL = 0.93


@dataclass(frozen=True)
class Model:
    provider: str
    name: str
    response: str
    tier: str
    ttft_ms: float
    tokens_per_s: float
    context: int


MODELS = (
    Model("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "small", 380.0, 90.0, 128_000),
    Model("openai", "gpt-4o", "gpt-4o-2024-08-06", "large", 520.0, 60.0, 128_000),
    Model("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-20241022", "small", 450.0, 70.0, 200_000),
    Model("anthropic", "claude-3-5-sonnet", "claude-3-5-sonnet-20241022", "large", 650.0, 55.0, 200_000),
)
_PROVIDER = np.array([m.provider for m in MODELS], dtype=object)
_NAME = np.array([m.name for m in MODELS], dtype=object)
_RESPONSE = np.array([m.response for m in MODELS], dtype=object)
_TIER = np.array([m.tier for m in MODELS], dtype=object)
_TTFT = np.array([m.ttft_ms for m in MODELS])
_TPS = np.array([m.tokens_per_s for m in MODELS])
_CONTEXT = np.array([m.context for m in MODELS])
#: The fallback after a failed retry: the other provider's model of the other tier
#: (gpt-4o-mini ↔ claude-3-5-sonnet, gpt-4o ↔ claude-3-5-haiku).
_FALLBACK = np.array([3, 2, 1, 0])
#: Per feature: (small model, large model, large share).
ROUTES = {"chat": (0, 3, 0.2), "long-doc": (2, 1, 0.3), "agent": (0, 3, 0.5)}


@dataclass(frozen=True, kw_only=True)
class TrafficModel:
    """What to generate: ``requests_per_s`` is the week's mean rate (0.5–50 is the evaluated range)."""

    start: datetime
    requests_per_s: float
    tenants: tuple[str, ...] = ("northwind", "contoso", "fabrikam")
    seed: int = 1
    overlays: tuple[Overlay, ...] = ()

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            object.__setattr__(self, "start", self.start.replace(tzinfo=UTC))
        if self.start.second or self.start.microsecond:
            raise ValueError("start must be a whole minute")
        if not 0 < self.requests_per_s <= 1000:
            raise ValueError("requests_per_s must be in (0, 1000]")

    def minutes(self, first: int, count: int) -> Iterator[list[dict[str, object]]]:
        """Span dicts of minutes ``[first, first + count)`` after ``start``, one block of
        ``BLOCK_MINUTES`` at a time (blocks are deterministic per seed and block number)."""
        block = first // BLOCK_MINUTES
        while block * BLOCK_MINUTES < first + count:
            low = max(first, block * BLOCK_MINUTES)
            high = min(first + count, (block + 1) * BLOCK_MINUTES)
            yield self._block(block, low, high)
            block += 1

    def _block(self, block: int, low: int, high: int) -> list[dict[str, object]]:
        rng = np.random.default_rng([self.seed, block])
        epoch_ms = int(self.start.timestamp() * 1000)
        arrival, tenant, feature = self._arrivals(rng, epoch_ms, block)
        keep = (arrival >= low * 60_000) & (arrival < high * 60_000)
        arrival, tenant, feature = arrival[keep], tenant[keep], feature[keep]
        canary_at, canary_tenant, canary_index = _canaries(low, high, len(self.tenants))
        n, c = len(arrival), len(canary_at)
        names = np.array(self.tenants, dtype=object)
        all_feature = np.concatenate([feature, np.array([INDEX_FEATURE[i] for i in canary_index], dtype=object)])
        all_tenant = np.concatenate([tenant, canary_tenant])
        columns = RequestColumns(
            trace_id=hex_ids(rng, n + c, 16),
            tenant_id=names[all_tenant],
            service=SERVICES[np.array([FEATURES.index(f) for f in all_feature], dtype=np.int64)],
            feature=all_feature,
            session_id=hex_ids(rng, n + c, 8),
            user_id=None,
        )
        sink = SpanSink(rng, columns, epoch_ms)
        flows = _Flows(
            rng, sink, self.overlays, epoch_ms, np.concatenate([arrival, canary_at]), all_tenant, all_feature
        )
        flows.tenant_names = columns.tenant_id
        flows.requests(np.arange(n))
        flows.canaries(np.arange(n, n + c), canary_index)
        spans, _ = sink.render()
        return spans

    def _arrivals(
        self, rng: np.random.Generator, epoch_ms: int, block: int
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.object_]]:
        """The block's requests: negative-binomial counts per minute, uniform within it."""
        minutes = np.arange(block * BLOCK_MINUTES, (block + 1) * BLOCK_MINUTES)
        at_s = (epoch_ms / 1000.0 + minutes * 60.0).astype(np.float64)
        bursts = rng.gamma(BURST_SHAPE, 1.0 / BURST_SHAPE, BLOCK_MINUTES // 5)
        intensity = self.requests_per_s * 60.0 * seasonality(at_s) * np.repeat(bursts, 5)
        weights = 1.0 / np.arange(1, len(self.tenants) + 1)
        weights /= weights.sum()
        counts = rng.poisson(intensity)
        arrival = np.repeat(minutes * 60_000.0, counts) + np.floor(rng.random(counts.sum()) * 60_000.0)
        tenant = rng.choice(len(self.tenants), len(arrival), p=weights).astype(np.int64)
        feature = np.array(FEATURES, dtype=object)[rng.choice(3, len(arrival), p=FEATURE_SHARE)]
        # a surge factor f adds f - 1 requests per request of its target, drawn in the same minute
        surplus = knob(self.overlays, "traffic_factor", epoch_ms + arrival, tenant, feature) - 1.0
        copies = (np.floor(surplus) + (rng.random(len(arrival)) < surplus % 1.0)).astype(np.int64)
        source = np.repeat(np.arange(len(arrival)), copies)
        extra = np.floor(arrival[source] / 60_000.0) * 60_000.0 + np.floor(rng.random(len(source)) * 60_000.0)
        arrival = np.concatenate([arrival, extra])
        order = np.argsort(arrival, kind="stable")
        tenant = np.concatenate([tenant, tenant[source]])[order]
        return arrival[order], tenant, np.concatenate([feature, feature[source]])[order]


def seasonality(epoch_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Diurnal × weekly load multiplier (mean ≈ 1 over a week)."""
    hour = (epoch_s % 86_400.0) / 3600.0
    diurnal = 1.0 + 0.45 * np.cos(2.0 * np.pi * (hour - 15.0) / 24.0) + 0.1 * np.cos(4.0 * np.pi * (hour - 11.0) / 24.0)
    weekday = ((epoch_s // 86_400.0) + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
    weekly = np.where(weekday >= 5, WEEKEND_LEVEL, 1.0)
    level: npt.NDArray[np.float64] = diurnal * weekly / (5 + 2 * WEEKEND_LEVEL) * 7
    return level


def _canaries(low: int, high: int, tenants: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], list[str]]:
    """One recall canary per tenant, index and minute, staggered through the minute."""
    minutes = np.arange(low, high)
    pairs = [(t, i) for t in range(tenants) for i in range(len(INDEXES))]
    at = np.array([m * 60_000.0 + 1_000.0 + 3_000.0 * k for m in minutes for k in range(len(pairs))])
    tenant = np.array([t for _ in minutes for t, _ in pairs], dtype=np.int64)
    index = [INDEXES[i] for _ in minutes for _, i in pairs]
    return at, tenant, index


class _Flows:
    """The application's request paths over whole columns of requests."""

    def __init__(
        self,
        rng: np.random.Generator,
        sink: SpanSink,
        overlays: tuple[Overlay, ...],
        epoch_ms: int,
        arrival: npt.NDArray[np.float64],
        tenant: npt.NDArray[np.int64],
        feature: npt.NDArray[np.object_],
    ) -> None:
        self.rng, self.sink, self.overlays, self.epoch_ms = rng, sink, overlays, epoch_ms
        self.arrival, self.tenant, self.feature = arrival, tenant, feature
        self.tenant_names: npt.NDArray[np.object_] = np.empty(0, dtype=object)

    def knob(
        self,
        name: str,
        req: npt.NDArray[np.int64],
        provider: npt.NDArray[np.object_] | None = None,
        index: object = None,
        at: npt.NDArray[np.float64] | None = None,
    ) -> npt.NDArray[np.float64]:
        """The knob per row of ``req`` at ``at`` (the calls' starts, ms into the block; default:
        the requests' arrivals)."""
        indexes = None if index is None else np.full(len(req), index, dtype=object)
        return knob(
            self.overlays,
            name,
            self.epoch_ms + (self.arrival[req] if at is None else at),
            self.tenant[req],
            self.feature[req],
            provider,
            indexes,
        )

    def lognormal(self, median: float | npt.NDArray[np.float64], sigma: float, n: int) -> npt.NDArray[np.float64]:
        return np.asarray(median * np.exp(sigma * self.rng.standard_normal(n)), dtype=np.float64)

    def requests(self, req: npt.NDArray[np.int64]) -> None:
        start = np.floor(self.arrival[req])
        root = self.sink.new_ids(len(req))
        end = start + 1.0
        for name, path in (("chat", self._chat), ("long-doc", self._long_doc), ("agent", self._agent)):
            mine = self.feature[req] == name
            end[mine] = path(req[mine], start[mine] + 1.0, root[mine])
        self.sink.add(req, "request", start, end - start + 2.0, None, root, name="handle", status="ok")

    def _chat(
        self, req: npt.NDArray[np.int64], cursor: npt.NDArray[np.float64], root: npt.NDArray[np.object_]
    ) -> npt.NDArray[np.float64]:
        n = len(req)
        hit_rate = self.knob("exact_hit", req)
        hit = self.rng.random(n) < np.where(hit_rate >= 0, hit_rate, EXACT_HIT)
        duration = self.lognormal(2.0, 0.4, n)
        self.sink.add(
            req, "cache", cursor, duration, root, name="cache.exact", status="ok", cache_layer="exact", cache_hit=hit
        )
        cursor = np.floor(cursor + duration) + 1.0
        miss = ~hit
        cursor[miss] = self._retrieve(req[miss], cursor[miss], root[miss], "kb")
        turn = 1 + self.rng.geometric(0.35, int(miss.sum()))
        prompt = self.lognormal((700.0 * turn).astype(np.float64), 0.5, len(turn))
        output = self.lognormal(220.0, 0.7, len(turn))
        cursor[miss] = self._llm(req[miss], cursor[miss], root[miss], "chat", prompt, output)
        return cursor

    def _long_doc(
        self, req: npt.NDArray[np.int64], cursor: npt.NDArray[np.float64], root: npt.NDArray[np.object_]
    ) -> npt.NDArray[np.float64]:
        n = len(req)
        cursor = self._retrieve(req, cursor, root, "contracts")
        prompt = 6000.0 * (1.0 + self.rng.pareto(1.5, n))
        output = self.lognormal(500.0, 0.6, n)
        return self._llm(req, cursor, root, "long-doc", prompt, output)

    def _agent(
        self, req: npt.NDArray[np.int64], cursor: npt.NDArray[np.float64], root: npt.NDArray[np.object_]
    ) -> npt.NDArray[np.float64]:
        """Planned steps (1–6), each an LLM call and a tool call; a failed tool call costs two more
        steps (re-plan, retry), so a failing tool makes agents loop, up to ``MAX_AGENT_STEPS``."""
        remaining = np.minimum(6, 1 + self.rng.poisson(1.6, len(req)))
        cursor = cursor.copy()
        for step in range(MAX_AGENT_STEPS):
            go = remaining > 0
            if not go.any():
                break
            r, parent = req[go], self.sink.new_ids(int(go.sum()))
            start = cursor[go]
            prompt = self.lognormal(1500.0 + 600.0 * min(step, 5), 0.4, len(r))
            end = self._llm(r, start + 1.0, parent, "agent", prompt, self.lognormal(120.0, 0.6, len(r)))
            end, failed = self._tool(r, end + 1.0, parent)
            self.sink.add(r, "agent_step", start, end - start + 1.0, root[go], parent, name=f"step-{step}", status="ok")
            cursor[go] = end + 2.0
            remaining[go] += 2 * failed - 1
        return cursor

    def _retrieve(
        self, req: npt.NDArray[np.int64], cursor: npt.NDArray[np.float64], parent: npt.NDArray[np.object_], index: str
    ) -> npt.NDArray[np.float64]:
        duration = self.lognormal(35.0, 0.5, len(req))
        self.sink.add(
            req,
            "retrieval",
            cursor,
            duration,
            parent,
            name="vector.search",
            status="ok",
            index_name=self._index_names(req, index),
            embedding_model="text-embedding-3-small",
            index_embedding_model="text-embedding-3-small",
        )
        return np.floor(cursor + duration) + 1.0

    def _index_names(self, req: npt.NDArray[np.int64], index: str) -> npt.NDArray[np.object_]:
        names: npt.NDArray[np.object_] = self.tenant_names[req] + f"-{index}"
        return names

    def _tool(
        self, req: npt.NDArray[np.int64], cursor: npt.NDArray[np.float64], parent: npt.NDArray[np.object_]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Tool calls; returns their end times and which failed."""
        n = len(req)
        which = self.rng.choice(len(TOOLS), n, p=[0.5, 0.3, 0.2])
        extra = np.where(which == 0, self.knob("tool_error", req, at=cursor), 0.0)
        failed = self.rng.random(n) < TOOL_ERROR + extra
        duration = self.lognormal(300.0, 0.8, n)
        for mask, status, error in ((~failed, "ok", None), (failed, "error", "tool_error")):
            self.sink.add(
                req[mask],
                "tool",
                cursor[mask],
                duration[mask],
                parent[mask],
                name=TOOLS[which[mask]],
                tool_name=TOOLS[which[mask]],
                status=status,
                error_type=error,
            )
        return np.floor(cursor + duration) + 1.0, failed

    def _llm(
        self,
        req: npt.NDArray[np.int64],
        cursor: npt.NDArray[np.float64],
        parent: npt.NDArray[np.object_],
        feature: str,
        prompt: npt.NDArray[np.float64],
        output: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """One logical call: attempt 0, a retry on the same model, then the other provider."""
        n = len(req)
        small, large, share = ROUTES[feature]
        forced = self.knob("large_share", req)
        escalate = self.rng.random(n) < np.where(forced >= 0, forced, share)
        model = np.where(escalate, large, small)
        reason = np.where(escalate, "escalation", "default").astype(object)
        route = np.array([f"{feature}:{m}" for m in _NAME], dtype=object)[model]
        tier = _TIER[model]
        prompt = np.minimum(prompt, 0.9 * _CONTEXT[model]).astype(np.int64)
        output = np.maximum(1.0, output * self.knob("output_factor", req)).astype(np.int64)
        rows = np.arange(n)
        cursor = cursor.copy()
        for attempt in range(3):
            if attempt == 2:
                model[rows] = _FALLBACK[model[rows]]
                reason[rows] = "fallback"
            r = req[rows]
            provider = _PROVIDER[model[rows]]
            u = self.rng.random(len(rows))
            server = SERVER_ERROR + self.knob("server_error", r, provider, at=cursor[rows])
            limited = RATE_LIMITED + self.knob("rate_limited", r, provider, at=cursor[rows])
            code = np.where(u < limited, 429, np.where(u < limited + server, 503, 200))
            ok = code == 200
            common: dict[str, Column] = {
                "name": "chat",
                "attempt": attempt,
                "provider": provider,
                "model_requested": _NAME[model[rows]],
                "route": route[rows],
                "model_tier": tier[rows],
                "routing_reason": reason[rows],
                "prompt_id": f"{feature}-prompt",
                "prompt_version": "v3",
            }
            good = rows[ok]
            m = model[good]
            release = self.knob("model_response", req[good], _PROVIDER[m], at=cursor[good])
            ttft = self.lognormal(_TTFT[m], 0.3, len(good)) + prompt[good] / 4000.0
            ttft *= self.knob("ttft_factor", req[good], _PROVIDER[m], at=cursor[good])
            duration = ttft + output[good] / _TPS[m] * 1000.0
            self.sink.add(
                req[good],
                "llm",
                cursor[good],
                np.round(duration, 3),
                parent[good],
                status="ok",
                model_response=_responses(_RESPONSE[m], release),
                input_tokens=prompt[good],
                output_tokens=output[good],
                ttft_ms=np.round(ttft, 3),
                **{k: v[ok] if isinstance(v, np.ndarray) else v for k, v in common.items()},
            )
            cursor[good] = np.floor(cursor[good] + duration) + 1.0
            bad = rows[~ok]
            wait = self.lognormal(300.0, 0.5, len(bad))
            self.sink.add(
                req[bad],
                "llm",
                cursor[bad],
                wait,
                parent[bad],
                status="error",
                error_type=np.where(code[~ok] == 429, "rate_limited", "server_error").astype(object),
                http_status=code[~ok],
                input_tokens=0,
                output_tokens=0,
                **{k: v[~ok] if isinstance(v, np.ndarray) else v for k, v in common.items()},
            )
            cursor[bad] = np.floor(cursor[bad] + wait) + 500.0
            rows = bad
            if not len(rows):
                break
        return cursor

    def canaries(self, req: npt.NDArray[np.int64], index: list[str]) -> None:
        """recall@5 of a known query per tenant index (the retrieval-quality signal)."""
        n = len(req)
        start = np.floor(self.arrival[req])
        recall = np.full(n, CANARY_RECALL)
        names = np.array(index, dtype=object)
        for name in INDEXES:
            mine = names == name
            forced = self.knob("canary_recall", req[mine], index=name)
            recall[mine] = np.where(forced >= 0, forced, CANARY_RECALL)
        score = self.rng.binomial(5, recall) / 5.0
        self.sink.add(
            req,
            "eval",
            start,
            self.lognormal(40.0, 0.3, n),
            None,
            name="recall@5",
            status="ok",
            eval_name="recall@5",
            eval_score=score,
            eval_passed=score >= 0.6,
            index_name=self.tenant_names[req] + "-" + names,
        )


def _responses(names: npt.NDArray[np.object_], release: npt.NDArray[np.float64]) -> npt.NDArray[np.object_]:
    """The model_response of each call: its model's, or under release n > 0 its n-th new version."""
    responses = names.copy()
    for number in np.unique(release[release > 0]):
        chosen = release == number
        responses[chosen] = names[chosen] + f"-preview.{int(number)}"
    return responses
