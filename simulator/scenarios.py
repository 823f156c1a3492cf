"""Incident scenarios for ``spanline simulate --scenario NAME``: baseline traffic plus one failure.

Each scenario is the noisy, diurnal baseline of :mod:`.workload` with an
:class:`~.workload_incident.Incident` from ``incident_at`` for ``incident_minutes``. The registry
is data the alerting tests assert against: which docs/requirements.md §5 rule (its name in ``alerts/rules.yaml``)
must page, with which runbook and diagnosis branch, for which scope. Magnitudes are chosen to
cross docs/requirements.md §5's default thresholds several times over inside the window, while the baseline
stays well below every one of them (``tests/test_scenarios.py`` checks both, minute by minute).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from spanline.simulator.workload import DEFAULT_TENANTS, WorkloadConfig
from spanline.simulator.workload_catalog import FEATURES
from spanline.simulator.workload_incident import Effects, Incident, Target

#: Default shape of a scenario run: an hour of history first (baselines), then the incident.
DEFAULT_HOURS = 2.0
DEFAULT_INCIDENT_AT_MIN = 60.0
DEFAULT_INCIDENT_MINUTES = 20.0
#: Spans per request of the baseline, measured (for sizing long replays).
SPANS_PER_REQUEST = 8.0


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One failure mode and what it must trigger.

    ``expected_scope`` names the dimensions of the page's scope; :meth:`scope` gives their
    values for a tenant list. ``also_fires`` are rules the same incident legitimately trips
    too (an outage above 50% errors is also above 10%).
    """

    name: str
    summary: str
    target: Target = Target()
    effects: Effects = field(default_factory=Effects)
    expected_rule: str | None
    expected_runbook: str | None
    expected_branch: str | None
    expected_scope: tuple[str, ...] = ()
    also_fires: tuple[str, ...] = ()

    @property
    def is_baseline(self) -> bool:
        return self.expected_rule is None

    def incident(
        self, at_min: float = DEFAULT_INCIDENT_AT_MIN, minutes: float = DEFAULT_INCIDENT_MINUTES
    ) -> Incident | None:
        """The scenario's incident window (None for the baseline)."""
        if self.is_baseline:
            return None
        return Incident(at_s=at_min * 60.0, duration_s=minutes * 60.0, target=self.target, effects=self.effects)

    def workload(
        self,
        *,
        start: datetime,
        hours: float = DEFAULT_HOURS,
        requests_per_s: float = 20.0,
        seed: int = 7,
        tenants: tuple[str, ...] | None = None,
        incident_at_min: float = DEFAULT_INCIDENT_AT_MIN,
        incident_minutes: float = DEFAULT_INCIDENT_MINUTES,
    ) -> WorkloadConfig:
        """The generator configuration replaying this scenario (tenants: largest first)."""
        if not self.is_baseline and incident_at_min + incident_minutes > hours * 60.0:
            raise ValueError(
                f"the incident ({incident_at_min:g} + {incident_minutes:g} min) must end within the "
                f"{hours * 60.0:g} simulated minutes: raise --hours or move --incident-at"
            )
        return WorkloadConfig(
            seed=seed,
            start=start,
            duration_s=hours * 3600.0,
            requests_per_s=requests_per_s,
            tenants=tenants or DEFAULT_TENANTS,
            incident=self.incident(incident_at_min, incident_minutes),
        )

    def scope(self, tenants: tuple[str, ...]) -> dict[str, str]:
        """The expected page's scope values, e.g. ``{"tenant_id": "acme", "feature": "support-chat"}``."""
        values = {
            "tenant_id": tenants[self.target.tenant_rank] if self.target.tenant_rank is not None else None,
            "feature": self.target.features[0] if len(self.target.features) == 1 else None,
            "provider": self.target.provider,
            "model_requested": self.target.model,
            "kind": self.effects.stage_latency[0] if self.effects.stage_latency else None,
            "index_name": self._index(tenants),
        }
        missing = [dim for dim in self.expected_scope if values.get(dim) is None]
        if missing:
            raise ValueError(f"scenario {self.name!r} does not pin {missing} of its scope")
        return {dim: str(values[dim]) for dim in self.expected_scope}

    def _index(self, tenants: tuple[str, ...]) -> str | None:
        """The index an index-loss incident shrinks: its tenant's index of its one feature."""
        if self.effects.index_loss is None or self.target.tenant_rank is None or len(self.target.features) != 1:
            return None
        suffix = next(f.index_suffix for f in FEATURES if f.name == self.target.features[0])
        return f"{tenants[self.target.tenant_rank]}-{suffix}"


_LARGEST = 0  # the largest tenant: an incident there is visible above every minimum-traffic guard

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="baseline",
            summary="noisy diurnal traffic with the usual background of errors, 429s and retries; must not page",
            expected_rule=None,
            expected_runbook=None,
            expected_branch=None,
        ),
        Scenario(
            name="cost-output-length",
            summary="a prompt change asks for step-by-step answers and lifts max_tokens: the largest tenant's "
            "answers get 25x longer",
            target=Target(tenant_rank=_LARGEST),
            effects=Effects(output_factor=25.0),
            expected_rule="cost_spike_hourly",
            expected_runbook="cost-spike",
            expected_branch="output_length",
            expected_scope=("tenant_id",),
            also_fires=("cost_per_request_contract", "latency_contract"),
        ),
        Scenario(
            name="cost-traffic-volume",
            summary="the largest tenant's batch job sends 6x its usual request rate",
            target=Target(tenant_rank=_LARGEST),
            effects=Effects(traffic_factor=6.0),
            expected_rule="cost_spike_hourly",
            expected_runbook="cost-spike",
            expected_branch="traffic_volume",
            expected_scope=("tenant_id",),
            # 6x the requests brings its own Gemini key near its limit (the headroom warning); 40
            # minutes of it add a fifth to the tenant's day: a real day-over-day rise
            also_fires=("rate_limit_headroom_tokens", "rate_limit_headroom_requests", "cost_spike_day_over_day"),
        ),
        Scenario(
            name="cost-cache-collapse",
            summary="a deploy puts a timestamp into the exact-cache key: support-chat's exact hits vanish, "
            "requests fall through to retrieval and the LLM",
            target=Target(tenant_rank=_LARGEST, features=("support-chat",)),
            effects=Effects(cache_hit={"exact": 0.005}),
            expected_rule="cache_collapse",
            expected_runbook="cache-collapse",
            expected_branch="exact_layer",
            expected_scope=("tenant_id", "feature"),
        ),
        Scenario(
            name="cost-routing-shift",
            summary="a router threshold change escalates 80% of support-chat to the large tier (baseline 23%)",
            target=Target(tenant_rank=_LARGEST, features=("support-chat",)),
            effects=Effects(large_share=0.8),
            # a routing shift that moves spend is a cost page with the routing branch (issue 16);
            # the large-tier share rule pages its medium too where the volume lets it judge the mix
            expected_rule="cost_spike_hourly",
            expected_runbook="cost-spike",
            expected_branch="routing_escalation",
            expected_scope=("tenant_id", "feature"),
            also_fires=("routing_shift", "cost_per_request_contract"),
        ),
        Scenario(
            name="rate-limit-storm",
            summary="the largest tenant's OpenAI quota runs out: 15% of its OpenAI attempts get 429 + Retry-After "
            "and are retried",
            target=Target(tenant_rank=_LARGEST, provider="openai"),
            effects=Effects(rate_limited=0.15),
            expected_rule="rate_limiting",
            expected_runbook="rate-limits",
            expected_branch="provider_quota",
            expected_scope=("tenant_id", "provider"),
        ),
        Scenario(
            name="provider-outage",
            summary="Anthropic answers 85% of attempts with 5xx for everyone; calls fall back to OpenAI",
            target=Target(provider="anthropic"),
            effects=Effects(server_error=0.85),
            expected_rule="error_rate",
            expected_runbook="provider-outage",
            expected_branch="provider_errors",
            # the fallback to OpenAI shifts the routing mix: a medium routing_shift (branch routing_fallback);
            # every failed call is retried: retry_amplification (medium; the dispatcher holds it back
            # while the critical error_rate page of the same provider fires); a call that fails over
            # lands on the other provider's model of the other tier (Claude Haiku -> GPT-4o), so a
            # feature routed mostly to Haiku spends more: a real cost_spike_hourly of that tenant
            expected_scope=("provider",),
            also_fires=("routing_shift", "retry_amplification", "cost_spike_hourly"),
        ),
        Scenario(
            name="tool-storm",
            summary="search_web starts failing 40% of the time for the largest tenant's code agent; agents loop "
            "(more steps per run)",
            target=Target(tenant_rank=_LARGEST, features=("code-agent",)),
            effects=Effects(tool_error=("search_web", 0.4), agent_extra_steps=4.5),
            expected_rule="tool_call_storm",
            expected_runbook="tool-storm",
            expected_branch="single_tool",
            expected_scope=("tenant_id", "feature"),
            # looping agents spend more: the feature's cost spike (issue 16: spend judged per feature)
            also_fires=("latency_contract", "cost_per_request_contract", "cost_spike_hourly"),
        ),
        Scenario(
            name="latency-spike",
            summary="Anthropic's endpoint is slow for the largest tenant's summarise feature: TTFT x5",
            target=Target(tenant_rank=_LARGEST, features=("summarise",), provider="anthropic"),
            effects=Effects(ttft_factor=5.0),
            expected_rule="latency_spike",
            expected_runbook="latency-spike",
            expected_branch="provider_endpoint",
            expected_scope=("tenant_id", "feature"),
            also_fires=("latency_contract",),
        ),
        Scenario(
            name="eval-regression",
            summary="support-answer v9 rolls out to the largest tenant and its answers stop being grounded: "
            "the faithfulness eval fails about 60% of the time",
            target=Target(tenant_rank=_LARGEST, features=("support-chat",)),
            effects=Effects(prompt_version="v9", faithfulness_beta=(2.5, 2.0)),
            expected_rule="eval_pass_rate_drop",
            expected_runbook="hallucination-spike",
            expected_branch="prompt_change",
            expected_scope=("tenant_id", "feature"),
            also_fires=("hallucination_spike",),
        ),
        Scenario(
            name="index-corruption",
            summary="the largest tenant's docs index is corrupted by a bad re-index: canary recall@5 falls "
            "from ~0.93 to ~0.35",
            target=Target(tenant_rank=_LARGEST),
            effects=Effects(canary_recall=0.35),
            expected_rule="index_corruption",
            expected_runbook="index-corruption",
            expected_branch="recall_drop",
            expected_scope=("tenant_id",),
            also_fires=("eval_pass_rate_drop",),
        ),
        Scenario(
            name="embedding-mismatch",
            summary="support-chat's query path switches to text-embedding-3-large while its index is still "
            "text-embedding-3-small",
            target=Target(tenant_rank=_LARGEST, features=("support-chat",)),
            effects=Effects(query_embedding_model="text-embedding-3-large"),
            expected_rule="embedding_mismatch",
            expected_runbook="index-corruption",
            expected_branch="embedding_mismatch",
            expected_scope=("tenant_id", "feature"),
        ),
        Scenario(
            name="context-exhaustion",
            summary="the largest tenant starts summarising book-length documents: 8% of prompts exceed the "
            "context window (rejected or truncated)",
            target=Target(tenant_rank=_LARGEST, features=("summarise",)),
            effects=Effects(oversize_share=0.08),
            expected_rule="context_exhaustion",
            expected_runbook="context-budget",
            expected_branch="truncation",
            # book-length prompts also slow summarise's first tokens
            expected_scope=("tenant_id",),
            also_fires=("latency_spike", "cost_spike_hourly"),  # book-length prompts cost more too
        ),
        Scenario(
            name="model-version-change",
            summary="OpenAI silently moves gpt-4o to gpt-4o-2024-11-20 for every tenant",
            target=Target(provider="openai", model="gpt-4o"),
            effects=Effects(model_response="gpt-4o-2024-11-20"),
            expected_rule="model_version_change",
            expected_runbook="silent-regression",
            expected_branch="new_model_version",
            expected_scope=("provider", "model_requested"),
        ),
        Scenario(
            name="stage-budget-rerank",
            summary="the largest tenant's doc-search reranker moves to a CPU pool: rerank takes 4x as long "
            "(p95 ~170 ms -> ~700 ms against a 300 ms budget)",
            target=Target(tenant_rank=_LARGEST, features=("doc-search",)),
            effects=Effects(stage_latency=("rerank", 4.0)),
            expected_rule="stage_budget",
            expected_runbook="stage-budget",
            expected_branch="stage_dominates",
            expected_scope=("tenant_id", "feature", "kind"),
        ),
        Scenario(
            name="rate-limit-headroom",
            summary="the largest tenant backfills doc-search at 12x its usual rate: its Gemini key climbs past "
            "80% of the 2M tokens and 400 requests per minute it may send, before any 429",
            target=Target(tenant_rank=_LARGEST, features=("doc-search",), provider="google", model="gemini-1.5-flash"),
            effects=Effects(traffic_factor=12.0),
            expected_rule="rate_limit_headroom_tokens",
            expected_runbook="rate-limit-headroom",
            expected_branch="traffic_surge",
            expected_scope=("tenant_id", "provider", "model_requested"),
            also_fires=("rate_limit_headroom_requests", "cost_spike_hourly"),  # 12x doc-search spends 12x
        ),
        Scenario(
            name="index-shrink",
            summary="a schema change in the largest tenant's docs ingestion fails 30% of the documents: its "
            "doc-search index refreshes with 30% fewer documents and chunks, and retrieval quietly answers from less",
            target=Target(tenant_rank=_LARGEST, features=("doc-search",)),
            effects=Effects(index_loss=0.3),
            expected_rule="index_shrink_documents",
            expected_runbook="index-health",
            expected_branch="documents_dropped",
            expected_scope=("tenant_id", "index_name"),
            also_fires=("index_shrink_chunks",),
        ),
        Scenario(
            name="containment-drop",
            summary="the largest tenant's support knowledge base loses its billing articles: the bot hands "
            "25% of support-chat conversations to a human (baseline 6%)",
            target=Target(tenant_rank=_LARGEST, features=("support-chat",)),
            effects=Effects(escalation_share=0.25),
            expected_rule="containment_drop",
            expected_runbook="user-outcomes",
            expected_branch="no_signal_found",
            expected_scope=("tenant_id", "feature"),
        ),
        Scenario(
            name="feedback-drop",
            summary="a UI release shows the largest tenant's support-chat answers truncated: thumbs-up falls "
            "from 85% to 50% of the feedback",
            target=Target(tenant_rank=_LARGEST, features=("support-chat",)),
            effects=Effects(positive_feedback=0.5),
            expected_rule="feedback_drop",
            expected_runbook="user-outcomes",
            expected_branch="no_signal_found",
            expected_scope=("tenant_id", "feature"),
        ),
    )
}


def get_scenario(name: str) -> Scenario:
    """The registered scenario ``name``, or an error listing the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


def rate_for(hours: float, max_spans: int = 300_000, ceiling: float = 20.0) -> float:
    """A request rate keeping a replay of ``hours`` near ``max_spans`` spans (never above ``ceiling``)."""
    return min(ceiling, max_spans / (hours * 3600.0 * SPANS_PER_REQUEST))
