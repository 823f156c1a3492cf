-- name: retry_overhead
-- question: What do retries cost, per feature, provider and model? A retry is a model call with
--   attempt > 0; retry_share is retry cost over all calls' cost in the group (NULL when the
--   group cost nothing); retry_amplification is calls per first attempt (attempt = 0): 1.0 =
--   no retries (NULL when the window holds only retries of earlier calls).
-- param: since DateTime64(3, 'UTC')
-- param: until DateTime64(3, 'UTC')
-- param: tenant String = ''
SELECT
    feature,
    provider,
    model_requested AS model,
    count() AS calls,
    countIf(attempt > 0) AS retries,
    sum(cost_usd) AS spend_usd,
    sumIf(cost_usd, attempt > 0) AS retry_cost_usd,
    if(spend_usd > 0, retry_cost_usd / spend_usd, NULL) AS retry_share,
    if(calls > retries, calls / (calls - retries), NULL) AS retry_amplification
FROM ${database}.spans
WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
  AND model_requested != ''
GROUP BY feature, provider, model
ORDER BY retry_cost_usd DESC, feature, provider, model
