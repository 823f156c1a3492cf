-- Alert state changes at or after a moment of event time, oldest first (spanline/demo.py).
SELECT toString(at), state, rule, severity, scope, runbook, runbook_branch, summary, example_trace_ids
FROM ${database}.alerts
WHERE at >= {since:DateTime64(3, 'UTC')}
ORDER BY at, state DESC, rule
