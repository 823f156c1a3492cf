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


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
