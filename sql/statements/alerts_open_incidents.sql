-- The last row of every alert whose last recorded state is firing; the trailing underscore
-- keeps each aggregate's name apart from its column (alerts/history.py drops it).
SELECT
    dedup_key,
    max(at) AS at_,
    argMax(recorded_at, at) AS recorded_at_,
    argMax(rule, at) AS rule_,
    argMax(severity, at) AS severity_,
    argMax(state, at) AS state_,
    argMax(tenant_id, at) AS tenant_id_,
    argMax(scope, at) AS scope_,
    argMax(value, at) AS value_,
    argMax(threshold, at) AS threshold_,
    argMax(summary, at) AS summary_,
    argMax(runbook, at) AS runbook_,
    argMax(runbook_branch, at) AS runbook_branch_,
    argMax(diagnosis, at) AS diagnosis_,
    argMax(example_trace_ids, at) AS example_trace_ids_
FROM ${database}.alerts
GROUP BY dedup_key
HAVING state_ = 'firing'
ORDER BY dedup_key
