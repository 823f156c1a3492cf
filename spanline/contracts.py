"""Budgets and feature contracts (``spanline/contracts.yaml``, docs/requirements.md §5).

One entry is a tenant's (or one feature's) one-page system contract: latency and TTFT targets,
cost and token limits, expected recall, daily budget. Rules with a ``contract`` condition read
their threshold from the most specific entry for a scope; dashboards draw the same numbers.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spanline.errors import ConfigError
from spanline.yaml_file import read_yaml

CONTRACTS_FILE = Path(__file__).with_name("contracts.yaml")


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

    @model_validator(mode="after")
    def _says_something(self) -> Contract:
        if all(getattr(self, name) is None for name in LIMIT_FIELDS):
            raise ValueError("a contract needs at least one target (p95_latency_ms, daily_budget_usd, ...)")
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
