-- name: cost_per_successful_task
-- question: What does one successful task (trace) cost, per feature? A task is a trace whose
--   root span (kind 'request', no parent) starts in the window; it succeeded when the root's
--   status is 'ok'. cost_per_successful_task = cost of the successful traces / their count;
--   all_in_cost_per_success also charges the failed traces' cost to the successes.
-- param: since DateTime64(3, 'UTC')
-- param: until DateTime64(3, 'UTC')
-- param: tenant String = ''
WITH
    roots AS
    (
        SELECT tenant_id, trace_id, feature, status = 'ok' AS succeeded
        FROM ${database}.spans
        WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
          AND ({tenant:String} = '' OR tenant_id = {tenant:String})
          AND kind = 'request' AND parent_span_id = ''
    ),
    trace_costs AS
    (
        SELECT tenant_id, trace_id, sum(cost_usd) AS trace_cost_usd
        FROM ${database}.spans
        WHERE start_time >= {since:DateTime64(3, 'UTC')}
          AND ({tenant:String} = '' OR tenant_id = {tenant:String})
          AND trace_id IN (SELECT trace_id FROM roots)
        GROUP BY tenant_id, trace_id
    )
SELECT
    r.feature AS feature,
    count() AS tasks,
    countIf(r.succeeded) AS successful_tasks,
    successful_tasks / tasks AS success_rate,
    sumIf(c.trace_cost_usd, r.succeeded) AS successful_cost_usd,
    sum(c.trace_cost_usd) AS total_cost_usd,
    if(successful_tasks > 0, successful_cost_usd / successful_tasks, NULL) AS cost_per_successful_task,
    if(successful_tasks > 0, total_cost_usd / successful_tasks, NULL) AS all_in_cost_per_success
FROM roots AS r
LEFT JOIN trace_costs AS c ON r.tenant_id = c.tenant_id AND r.trace_id = c.trace_id
GROUP BY feature
ORDER BY feature
SETTINGS join_use_nulls = 0
