-- name: canary_vs_control
-- question: Is the canary or shadow route better or worse than the default route? Per feature
--   and arm (routing_reason canary, shadow, default = control), over LLM calls: cost per call,
--   p95 latency (quantileExactInclusive), refusal rate (error_type or finish_reason 'refusal'),
--   and their deltas against the feature's control; eval pass rate over the eval spans of the
--   arm's traces (a trace with a canary call is a canary trace, else with a shadow call a shadow
--   trace, else default). Only features with a canary or shadow arm are listed.
-- param: since DateTime64(3, 'UTC')
-- param: until DateTime64(3, 'UTC')
-- param: tenant String = ''
WITH
    calls AS
    (
        SELECT tenant_id, trace_id, feature, routing_reason AS arm, cost_usd, duration_ms,
               error_type = 'refusal' OR finish_reason = 'refusal' AS refused
        FROM ${database}.spans
        WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
          AND ({tenant:String} = '' OR tenant_id = {tenant:String})
          AND kind = 'llm' AND routing_reason IN ('default', 'canary', 'shadow')
    ),
    arms AS
    (
        SELECT feature, arm, count() AS llm_calls, avg(cost_usd) AS cost_per_call_usd,
               quantileExactInclusive(0.95)(duration_ms) AS p95_ms, avg(refused) AS refusal_rate
        FROM calls
        GROUP BY feature, arm
    ),
    trace_arms AS
    (
        SELECT tenant_id, trace_id, any(feature) AS feature,
               multiIf(has(groupUniqArray(arm), 'canary'), 'canary',
                       has(groupUniqArray(arm), 'shadow'), 'shadow', 'default') AS arm
        FROM calls
        GROUP BY tenant_id, trace_id
    ),
    evals AS
    (
        SELECT t.feature AS feature, t.arm AS arm, count() AS evals, countIf(e.eval_passed) AS evals_passed
        FROM trace_arms AS t
        INNER JOIN
        (
            SELECT tenant_id, trace_id, eval_passed
            FROM ${database}.spans
            WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
              AND ({tenant:String} = '' OR tenant_id = {tenant:String})
              AND kind = 'eval' AND eval_passed IS NOT NULL
        ) AS e ON t.tenant_id = e.tenant_id AND t.trace_id = e.trace_id
        GROUP BY feature, arm
    ),
    control AS (SELECT * FROM arms WHERE arm = 'default')
SELECT
    a.feature AS feature,
    a.arm AS arm,
    a.llm_calls AS llm_calls,
    a.cost_per_call_usd AS cost_per_call_usd,
    a.cost_per_call_usd - c.cost_per_call_usd AS cost_delta_usd,
    a.cost_per_call_usd / c.cost_per_call_usd - 1 AS cost_delta_ratio,
    a.p95_ms AS p95_ms,
    a.p95_ms - c.p95_ms AS p95_delta_ms,
    a.refusal_rate AS refusal_rate,
    a.refusal_rate - c.refusal_rate AS refusal_rate_delta,
    e.evals AS evals,
    e.evals_passed / e.evals AS eval_pass_rate
FROM arms AS a
LEFT JOIN control AS c ON a.feature = c.feature
LEFT JOIN evals AS e ON a.feature = e.feature AND a.arm = e.arm
WHERE a.feature IN (SELECT feature FROM arms WHERE arm IN ('canary', 'shadow'))
ORDER BY feature, arm
SETTINGS join_use_nulls = 1
