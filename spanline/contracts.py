"""Budgets and feature contracts (``spanline/contracts.yaml``, docs/requirements.md §5).

One entry is a tenant's (or one feature's) one-page system contract: latency and TTFT targets,
cost and token limits, expected recall, daily budget, per-stage p95 budgets (per span kind) and
the provider rate limits of the tenant's keys. Rules with a ``contract`` or ``rate_limit``
condition read their threshold from the most specific entry for a scope; dashboards draw the
same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spanline.errors import ConfigError
from spanline.yaml_file import read_yaml

CONTRACTS_FILE = Path(__file__).with_name("contracts.yaml")


#: Span kinds a stage budget may name: every step of a request but the request itself and evals.
STAGE_KINDS = ("llm", "embedding", "retrieval", "rerank", "tool", "cache", "agent_step")
StageKind = Literal["llm", "embedding", "retrieval", "rerank", "tool", "cache", "agent_step"]
Millis = Annotated[float, Field(gt=0)]
RATE_LIMIT_FIELDS = ("tokens_per_minute", "requests_per_minute")


class RateLimit(BaseModel):
    """A provider's per-minute limits for one model on the tenant's key (or one deployment of it).

    Tokens are input + output tokens of LLM calls, as providers count them towards TPM;
    requests are LLM calls, retries included (a retried call is another request to the provider).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    tokens_per_minute: float | None = Field(None, gt=0)
    requests_per_minute: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _says_something(self) -> RateLimit:
        if self.tokens_per_minute is None and self.requests_per_minute is None:
            raise ValueError("a rate limit needs tokens_per_minute, requests_per_minute or both")
        return self


class Contract(BaseModel):
    """Targets for ``tenant`` ('*' = every tenant) and ``feature`` ('*' or absent = every feature)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str = Field(min_length=1)
    feature: str = "*"
    p95_latency_ms: float | None = Field(None, gt=0)
    p95_ttft_ms: float | None = Field(None, gt=0)
    max_cost_per_request_usd: float | None = Field(None, gt=0)
    max_input_tokens: int | None = Field(None, gt=0)
    max_output_tokens: int | None = Field(None, gt=0)
    expected_recall_at_k: float | None = Field(None, gt=0, le=1)
    daily_budget_usd: float | None = Field(None, gt=0)
    #: p95 duration budget per stage (span kind), e.g. {retrieval: 250, rerank: 150}.
    stage_p95_ms: dict[StageKind, Millis] | None = None
    #: Provider limits of the tenant's keys; only tenant-wide entries (no feature) carry them.
    rate_limits: list[RateLimit] | None = None

    @model_validator(mode="after")
    def _says_something(self) -> Contract:
        if all(getattr(self, name) is None for name in (*LIMIT_FIELDS, "stage_p95_ms", "rate_limits")):
            raise ValueError("a contract needs at least one target (p95_latency_ms, daily_budget_usd, ...)")
        if self.rate_limits is not None and self.feature != "*":
            raise ValueError("rate limits belong to a tenant's keys, not to a feature: put them on a tenant-wide entry")
        pairs = [(limit.provider, limit.model) for limit in self.rate_limits or []]
        if len(set(pairs)) != len(pairs):
            raise ValueError("rate_limits names a provider/model twice")
        return self

    @property
    def specificity(self) -> int:
        """Exact tenant and feature beat wildcards: 3 = both exact, 0 = '*'/'*'."""
        return (2 if self.tenant != "*" else 0) + (1 if self.feature != "*" else 0)

    def covers(self, tenant: str, feature: str | None) -> bool:
        """Whether this entry applies; ``feature`` None = a tenant-wide scope (feature entries don't)."""
        if self.tenant not in ("*", tenant):
            return False
        return self.feature == "*" if feature is None else self.feature in ("*", feature)


LIMIT_FIELDS = (
    "p95_latency_ms",
    "p95_ttft_ms",
    "max_cost_per_request_usd",
    "max_input_tokens",
    "max_output_tokens",
    "expected_recall_at_k",
    "daily_budget_usd",
)


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contracts: list[Contract]


def load_contracts(path: Path | None = None) -> list[Contract]:
    """Contracts from ``path`` (default spanline/contracts.yaml); errors name the entry and field."""
    path = path or CONTRACTS_FILE
    document = read_yaml(path, "contracts")
    try:
        contracts = _Document.model_validate(document).contracts
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = [str(part) for part in error["loc"]]
            if len(location) >= 2 and location[0] == "contracts":
                location = [f"contract #{int(location[1]) + 1}", *location[2:]]
            problems.append(f"{' '.join(location)}: {error['msg']}")
        raise ConfigError(f"{path}: " + "; ".join(problems)) from exc
    pairs = [(c.tenant, c.feature) for c in contracts]
    duplicated = sorted({f"{t}/{f}" for t, f in pairs if pairs.count((t, f)) > 1})
    if duplicated:
        raise ConfigError(f"{path}: more than one contract for {', '.join(duplicated)}")
    return contracts


def contract_limit(contracts: list[Contract], field: str, tenant: str, feature: str | None) -> float | None:
    """The most specific contract's ``field`` for a scope (None when no contract sets it)."""
    candidates = [c for c in contracts if c.covers(tenant, feature) and getattr(c, field) is not None]
    if not candidates:
        return None
    return float(getattr(max(candidates, key=lambda c: c.specificity), field))


def stage_budget(contracts: list[Contract], tenant: str, feature: str | None, kind: str) -> float | None:
    """The most specific contract's p95 budget (ms) for stage ``kind`` of a scope (None = unbudgeted)."""
    budgets = [
        (c.specificity, float(value))
        for c in contracts
        if c.covers(tenant, feature)
        for name, value in (c.stage_p95_ms or {}).items()
        if name == kind
    ]
    return max(budgets)[1] if budgets else None


def rate_limit(contracts: list[Contract], field: str, tenant: str, provider: str, model: str) -> float | None:
    """The per-minute ``field`` limit (tokens_per_minute or requests_per_minute) of a tenant's
    provider/model, from the most specific entry that names that model (None = no limit known)."""
    limits = [
        (contract.specificity, float(value))
        for contract in contracts
        if contract.covers(tenant, None)
        for limit in contract.rate_limits or []
        if (limit.provider, limit.model) == (provider, model) and (value := getattr(limit, field)) is not None
    ]
    return max(limits)[1] if limits else None
