-- name: prompt_version_comparison
-- question: How do prompt versions compare on cost, latency and quality? Per prompt id and
--   version: LLM calls, cost per call, p50/p95 call latency (quantileExactInclusive), traces,
--   cost per trace, and the pass rate of the eval spans in those traces. A trace belongs to the
--   prompt version of its first LLM call (earliest start_time, then span_id).
-- param: since DateTime64(3, 'UTC')
-- param: until DateTime64(3, 'UTC')
-- param: tenant String = ''
WITH
    calls AS
    (
        SELECT tenant_id, trace_id, span_id, start_time, prompt_id, prompt_version, cost_usd, duration_ms
        FROM ${database}.spans
        WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
          AND ({tenant:String} = '' OR tenant_id = {tenant:String})
          AND kind = 'llm' AND prompt_id != ''
    ),
    trace_versions AS
    (
        SELECT tenant_id, trace_id,
               argMin((prompt_id, prompt_version), (start_time, span_id)) AS version
        FROM calls
        GROUP BY tenant_id, trace_id
    ),
    evals AS
    (
        SELECT t.version.1 AS prompt_id, t.version.2 AS prompt_version,
               count() AS evals, countIf(e.eval_passed) AS evals_passed
        FROM trace_versions AS t
        INNER JOIN
        (
            SELECT tenant_id, trace_id, eval_passed
            FROM ${database}.spans
            WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
              AND ({tenant:String} = '' OR tenant_id = {tenant:String})
              AND kind = 'eval' AND eval_passed IS NOT NULL
        ) AS e ON t.tenant_id = e.tenant_id AND t.trace_id = e.trace_id
        GROUP BY prompt_id, prompt_version
    ),
    versions AS
    (
        SELECT prompt_id, prompt_version, count() AS llm_calls, sum(cost_usd) AS spend_usd,
               uniqExact(tenant_id, trace_id) AS traces,
               quantileExactInclusive(0.5)(duration_ms) AS p50_ms,
               quantileExactInclusive(0.95)(duration_ms) AS p95_ms
        FROM calls
        GROUP BY prompt_id, prompt_version
    )
SELECT
    v.prompt_id AS prompt_id,
    v.prompt_version AS prompt_version,
    v.llm_calls AS llm_calls,
    v.traces AS traces,
    v.spend_usd AS spend_usd,
    v.spend_usd / v.llm_calls AS cost_per_call_usd,
    v.spend_usd / v.traces AS cost_per_trace_usd,
    v.p50_ms AS p50_ms,
    v.p95_ms AS p95_ms,
    e.evals AS evals,
    e.evals_passed / e.evals AS eval_pass_rate
FROM versions AS v
LEFT JOIN evals AS e ON v.prompt_id = e.prompt_id AND v.prompt_version = e.prompt_version
ORDER BY prompt_id, prompt_version
SETTINGS join_use_nulls = 1
