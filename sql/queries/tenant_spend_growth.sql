-- name: tenant_spend_growth
-- question: Which tenants' spend grew the most? Spend in [since, until) against the window of
--   the same length just before it; the top 'limit' tenants by growth in dollars. growth_ratio
--   is spend / previous_spend - 1, NULL for tenants with no previous spend.
-- param: since DateTime64(3, 'UTC')
-- param: until DateTime64(3, 'UTC')
-- param: tenant String = ''
-- param: limit UInt32 = 10
SELECT
    tenant_id,
    sumIf(cost_usd, start_time >= {since:DateTime64(3, 'UTC')}) AS spend_usd,
    sumIf(cost_usd, start_time < {since:DateTime64(3, 'UTC')}) AS previous_spend_usd,
    spend_usd - previous_spend_usd AS growth_usd,
    if(previous_spend_usd > 0, spend_usd / previous_spend_usd - 1, NULL) AS growth_ratio
FROM ${database}.spans
WHERE start_time >= {since:DateTime64(3, 'UTC')}
        - toIntervalMillisecond(dateDiff('millisecond', {since:DateTime64(3, 'UTC')}, {until:DateTime64(3, 'UTC')}))
  AND start_time < {until:DateTime64(3, 'UTC')}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
GROUP BY tenant_id
ORDER BY growth_usd DESC, tenant_id
LIMIT {limit:UInt32}
