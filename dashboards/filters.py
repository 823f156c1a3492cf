"""The WHERE fragments every panel shares: the dashboard variables, each a no-op when All.

``$__conditionalAll`` drops a filter whose variable is All (the plugin turns it into 1=1), so
an unfiltered dashboard reads without IN lists; ``${var:singlequote}`` quotes and escapes each
selected value. ``model`` filters model calls only: requests and tools carry no model.
"""

TENANT = "$__conditionalAll(tenant_id IN (${tenant:singlequote}), $tenant)"
SERVICE = "$__conditionalAll(service IN (${service:singlequote}), $service)"
FEATURE = "$__conditionalAll(feature IN (${feature:singlequote}), $feature)"
MODEL = "$__conditionalAll(model_requested IN (${model:singlequote}), $model)"
SCOPE = f"{TENANT} AND {SERVICE} AND {FEATURE}"
SCOPE_MODEL = f"{SCOPE} AND {MODEL}"
#: p50/p95/p99 in ms from the rollups' DDSketch states (µs); [1], [2], [3] of the result.
LATENCY_SKETCH = "quantilesDDMerge(0.01, 0.5, 0.95, 0.99)({column})"
