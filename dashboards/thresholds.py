"""Contract targets (spanline/contracts.yaml) as panel thresholds and as budget data in SQL."""

from __future__ import annotations

from spanline.contracts import Contract, contract_limit
from spanline.dashboards.model import Step

#: What a panel falls back to when no contract sets a target: the alert rule defaults (docs/requirements.md §5).
ERROR_RATE_HIGH, ERROR_RATE_CRITICAL = 0.10, 0.50
RATE_LIMITED = 0.02
TOOL_ERROR_RATE = 0.05
CONTEXT_EXHAUSTION = 0.001


def global_target(contracts: list[Contract], name: str) -> float | None:
    """The every-tenant ('*') target: what a dashboard showing all tenants is held to."""
    return contract_limit(contracts, name, "*", None)


def upper_limit(target: float | None, warn_share: float = 0.8) -> tuple[Step, ...]:
    """Amber from ``warn_share`` of the target, red above it; nothing without a target."""
    if target is None:
        return ()
    return (Step(round(target * warn_share, 6), "orange"), Step(target, "red"))


def daily_budgets(contracts: list[Contract]) -> dict[str, float]:
    """Tenant -> daily budget from tenant-wide entries (feature '*')."""
    return {
        c.tenant: float(c.daily_budget_usd)
        for c in contracts
        if c.tenant != "*" and c.feature == "*" and c.daily_budget_usd is not None
    }


def budgets_sql(budgets: dict[str, float]) -> str:
    """A ``values()`` table of budgets. Grafana has no parameter binding, so the contract's
    numbers are generated into the SQL: tenants are escaped string literals, budgets floats."""
    if not budgets:
        return "(SELECT '' AS tenant_id, 0.0 AS daily_budget_usd WHERE 0)"
    rows = ", ".join(f"({_literal(tenant)}, {budget!r})" for tenant, budget in sorted(budgets.items()))
    return f"values('tenant_id String, daily_budget_usd Float64', {rows})"


def stage_budgets_sql(contracts: list[Contract]) -> str:
    """A ``values()`` table of every stage budget: (b_tenant, b_feature, b_kind, specificity, budget_ms);
    '*' rows match any tenant/feature, and a panel keeps the most specific match (argMax)."""
    rows = [
        (c.tenant, c.feature, kind, c.specificity, float(budget))
        for c in contracts
        for kind, budget in (c.stage_p95_ms or {}).items()
    ]
    if not rows:
        return "(SELECT '' AS b_tenant, '' AS b_feature, '' AS b_kind, 0 AS specificity, 0.0 AS budget_ms WHERE 0)"
    body = ", ".join(f"({_literal(t)}, {_literal(f)}, {_literal(k)}, {s}, {b!r})" for t, f, k, s, b in sorted(rows))
    return f"values('b_tenant String, b_feature String, b_kind String, specificity UInt8, budget_ms Float64', {body})"


def rate_limits_sql(contracts: list[Contract]) -> str:
    """A ``values()`` table of every provider limit: (b_tenant, b_provider, b_model, specificity, tpm, rpm);
    a missing limit is 0 (no limit known)."""
    rows = [
        (
            c.tenant,
            limit.provider,
            limit.model,
            c.specificity,
            limit.tokens_per_minute or 0.0,
            limit.requests_per_minute or 0.0,
        )
        for c in contracts
        for limit in c.rate_limits or []
    ]
    if not rows:
        return (
            "(SELECT '' AS b_tenant, '' AS b_provider, '' AS b_model, 0 AS specificity, 0.0 AS tpm, 0.0 AS rpm WHERE 0)"
        )
    body = ", ".join(
        f"({_literal(t)}, {_literal(p)}, {_literal(m)}, {s}, {float(tpm)!r}, {float(rpm)!r})"
        for t, p, m, s, tpm, rpm in sorted(rows)
    )
    columns = "b_tenant String, b_provider String, b_model String, specificity UInt8, tpm Float64, rpm Float64"
    return f"values('{columns}', {body})"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
