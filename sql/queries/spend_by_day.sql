-- name: spend_by_day
-- question: What did each day cost, per tenant, feature, provider and model? Model calls are
--   spans that name a model (model_requested != ''); unpriced_calls are calls the price
--   catalog could not price (cost_known = 0), so their cost is missing from cost_usd.
-- param: since DateTime64(3, 'UTC')
-- param: until DateTime64(3, 'UTC')
-- param: tenant String = ''
SELECT
    toDate(start_time) AS day,
    tenant_id,
    feature,
    provider,
    model_requested AS model,
    count() AS calls,
    sum(cost_usd) AS spend_usd,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    countIf(NOT cost_known) AS unpriced_calls
FROM ${database}.spans
WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
  AND model_requested != ''
GROUP BY day, tenant_id, feature, provider, model
ORDER BY day, spend_usd DESC, tenant_id, feature, provider, model
