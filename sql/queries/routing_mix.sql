-- name: routing_mix
-- question: How are LLM calls routed over time? Per time bucket of bucket_s seconds: calls and
--   cost per route, model tier, routing reason and model, with each combination's share of the
--   bucket's LLM calls and cost (escalations, fallbacks, canaries show up as routing_reason).
-- param: since DateTime64(3, 'UTC')
-- param: until DateTime64(3, 'UTC')
-- param: tenant String = ''
-- param: bucket_s UInt32 = 3600
SELECT
    toStartOfInterval(start_time, toIntervalSecond({bucket_s:UInt32})) AS bucket,
    route,
    model_tier,
    routing_reason,
    model_requested AS model,
    count() AS calls,
    sum(cost_usd) AS spend_usd,
    count() / sum(count()) OVER (PARTITION BY bucket) AS share_of_calls,
    sum(cost_usd) / sum(sum(cost_usd)) OVER (PARTITION BY bucket) AS share_of_cost
FROM ${database}.spans
WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
  AND kind = 'llm'
GROUP BY bucket, route, model_tier, routing_reason, model
ORDER BY bucket, calls DESC, route, model_tier, routing_reason, model
