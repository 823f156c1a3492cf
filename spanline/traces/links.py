"""Where a trace opens: the CLI command and the Grafana trace dashboard (dashboards/catalog.py)."""

from __future__ import annotations

from urllib.parse import quote, urlencode

#: uid of the Grafana dashboard holding the Traces panel; its variable ``trace_id`` picks the trace.
TRACE_DASHBOARD_UID = "spanline-trace"
TRACE_VARIABLE = "trace_id"


def trace_command(trace_id: str) -> str:
    return f"spanline trace {trace_id}"


def grafana_trace_path(trace_id: str) -> str:
    """The dashboard's path with the trace chosen, relative to Grafana's base URL."""
    return f"/d/{TRACE_DASHBOARD_UID}/{TRACE_DASHBOARD_UID}?" + urlencode(
        {f"var-{TRACE_VARIABLE}": trace_id}, quote_via=quote
    )


def grafana_trace_url(grafana_url: str, trace_id: str) -> str:
    return grafana_url.rstrip("/") + grafana_trace_path(trace_id)
