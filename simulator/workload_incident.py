"""Incidents in the simulated traffic: which requests a failure touches, and how it changes them.

An :class:`Incident` is a time window, a :class:`Target` (a tenant, features, a provider or
model) and :class:`Effects` (knobs whose neutral values change nothing). The generator asks a
block's :class:`IncidentRows` which request rows are inside the incident and draws their
columns with the incident's knobs instead of the baseline's, column-wise with ``np.where``.
Causes therefore have their real consequences: a 429 storm produces retries that wait for
Retry-After, a collapsed cache sends more requests to retrieval and the LLM, an outage makes
calls fall back to the other provider. Blocks outside the window draw exactly what the
baseline draws, so the traffic around an incident is the baseline traffic for the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
import numpy.typing as npt

from spanline.simulator.workload_catalog import FEATURES, MODELS, TOOLS

#: The stages whose durations an incident can stretch (simulator/workload_stages.py).
SLOWABLE_STAGES = ("cache", "embedding", "retrieval", "rerank", "tool")


@dataclass(frozen=True, kw_only=True)
class Target:
    """Whose traffic the incident hits; ``None``/empty = everyone.

    ``tenant_rank`` indexes the configured tenants (0 = the largest). ``provider`` and
    ``model`` narrow call-level effects (latency, failures, versions) to LLM calls on them.
    """

    tenant_rank: int | None = None
    features: tuple[str, ...] = ()
    provider: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        known = {f.name for f in FEATURES}
        if unknown := set(self.features) - known:
            raise ValueError(f"unknown feature(s) {sorted(unknown)}; known: {sorted(known)}")
        if self.provider is not None and self.provider not in {m.provider for m in MODELS}:
            raise ValueError(f"unknown provider {self.provider!r}")
        if self.model is not None and self.model not in {m.model_requested for m in MODELS}:
            raise ValueError(f"unknown model {self.model!r}")


@dataclass(frozen=True, kw_only=True)
class Effects:
    """How traffic inside the incident differs from the baseline (defaults = no difference)."""

    #: Request-rate multiplier for the target (a customer's batch job, a retry loop upstream).
    traffic_factor: float = 1.0
    #: Visible output tokens (and the max-tokens cap) multiplied: a prompt that stopped being concise.
    output_factor: float = 1.0
    #: Response-cache hit rates per layer ("exact", "semantic") while the incident lasts.
    cache_hit: dict[str, float] = field(default_factory=dict)
    #: Share of routed calls the router sends to the feature's large (expensive) tier.
    large_share: float | None = None
    #: Probability that any attempt on the target provider/model is answered 429.
    rate_limited: float | None = None
    #: Probability that any attempt on the target provider/model fails with a 5xx (outage).
    server_error: float | None = None
    #: Time-to-first-token multiplier on the target provider/model.
    ttft_factor: float = 1.0
    #: (tool name, error probability): one tool starts failing.
    tool_error: tuple[str, float] | None = None
    #: Mean extra agent steps per run (baseline 1.5): agents loop when their tools fail.
    agent_extra_steps: float | None = None
    #: A new prompt version rolled out to the target (what a quality diagnosis looks for).
    prompt_version: str | None = None
    #: Beta(a, b) of faithfulness judge scores (baseline Beta(8, 1.6)); answers stop being grounded.
    faithfulness_beta: tuple[float, float] | None = None
    #: Per-document recall of the retrieval canaries (baseline 0.93).
    canary_recall: float | None = None
    #: Query embedding model differing from the index's (a half-finished embedding migration).
    query_embedding_model: str | None = None
    #: Share of long-document prompts larger than the context window (baseline 0.002).
    oversize_share: float | None = None
    #: The versioned name the provider now answers the target model with.
    model_response: str | None = None
    #: (span kind, duration multiplier): one stage of the target's requests slows down (a reranker
    #: moved to CPU, a vector store under compaction). Kinds: cache, embedding, retrieval, rerank, tool.
    stage_latency: tuple[str, float] | None = None
    #: Share of the documents (and their chunks) the target's index builds lose (a schema change
    #: that fails part of the corpus; simulator/workload_indexes.py).
    index_loss: float | None = None
    #: Share of the target's requests handed to a human (baseline: 0.5–6% by feature).
    escalation_share: float | None = None
    #: Share of the target's feedback that is positive (baseline 0.85).
    positive_feedback: float | None = None

    def __post_init__(self) -> None:
        for name in ("traffic_factor", "output_factor", "ttft_factor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        probabilities = [
            self.large_share,
            self.rate_limited,
            self.server_error,
            self.canary_recall,
            self.oversize_share,
            self.index_loss,
            self.escalation_share,
            self.positive_feedback,
            *self.cache_hit.values(),
        ]
        if self.tool_error is not None:
            probabilities.append(self.tool_error[1])
        if any(p is not None and not 0.0 <= p <= 1.0 for p in probabilities):
            raise ValueError("shares and probabilities must lie in [0, 1]")
        if unknown := set(self.cache_hit) - {"exact", "semantic"}:
            raise ValueError(f"unknown cache layer(s) {sorted(unknown)}")
        if self.stage_latency is not None and (
            self.stage_latency[0] not in SLOWABLE_STAGES
            or not (math.isfinite(self.stage_latency[1]) and self.stage_latency[1] > 0)
        ):
            raise ValueError(f"stage_latency needs one of {SLOWABLE_STAGES} and a positive factor")
        if self.tool_error is not None and self.tool_error[0] not in {name for name, _, _, _ in TOOLS}:
            raise ValueError(f"unknown tool {self.tool_error[0]!r}")

    def changed(self) -> list[str]:
        """Names of the knobs that differ from the baseline (for descriptions and tests)."""
        neutral = Effects()
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(neutral, f.name)]


@dataclass(frozen=True, kw_only=True)
class Incident:
    """A failure from ``at_s`` seconds after the workload start, lasting ``duration_s``."""

    at_s: float
    duration_s: float
    target: Target = Target()
    effects: Effects = Effects()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.at_s) and self.at_s >= 0):
            raise ValueError("the incident must start at or after the workload start")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError("the incident must last a positive number of seconds")

    def overlaps(self, first_ms: float, end_ms: float) -> bool:
        """Whether the incident window meets ``[first_ms, end_ms)`` (offsets from the start)."""
        return self.at_s * 1000.0 < end_ms and (self.at_s + self.duration_s) * 1000.0 > first_ms

    def window_mask(self, offset_ms: np.ndarray) -> np.ndarray:
        """Which offsets (ms from the workload start) lie inside the incident window."""
        return (offset_ms >= self.at_s * 1000.0) & (offset_ms < (self.at_s + self.duration_s) * 1000.0)


_MODEL_PROVIDER = np.array([m.provider for m in MODELS], dtype=object)
_MODEL_NAME = np.array([m.model_requested for m in MODELS], dtype=object)


@dataclass(frozen=True)
class IncidentRows:
    """One block's view of the incident: ``request[i]`` = request row ``i`` is affected."""

    effects: Effects
    target: Target
    request: np.ndarray

    @classmethod
    def none(cls, n: int) -> IncidentRows:
        """No incident: every knob neutral, no row affected."""
        return cls(Effects(), Target(), np.zeros(n, dtype=bool))

    @property
    def any(self) -> bool:
        return bool(self.request.any())

    def rows(self, req: np.ndarray) -> npt.NDArray[np.bool_]:
        """Affected flag of each of these request rows."""
        affected: npt.NDArray[np.bool_] = self.request[req]
        return affected

    def calls(self, req: np.ndarray, model: np.ndarray) -> npt.NDArray[np.bool_]:
        """Affected flag of LLM calls: the request is affected and the model is on target."""
        hit: npt.NDArray[np.bool_] = self.request[req]
        if self.target.provider is not None:
            hit = hit & (_MODEL_PROVIDER[model] == self.target.provider)
        if self.target.model is not None:
            hit = hit & (_MODEL_NAME[model] == self.target.model)
        return hit
