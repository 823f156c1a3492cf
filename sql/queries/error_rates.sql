-- name: error_rates
-- question: How often do model calls fail or get rate limited, per provider and endpoint?
--   Calls are spans that name a model. rate_limited counts HTTP 429s and error_type
--   'rate_limited' (as the rollups do); the rates are over all calls, retries included.
-- param: since DateTime64(3, 'UTC')
-- param: until DateTime64(3, 'UTC')
-- param: tenant String = ''
SELECT
    provider,
    endpoint,
    count() AS calls,
    countIf(status = 'error') AS errors,
    errors / calls AS error_rate,
    countIf(http_status = 429 OR error_type = 'rate_limited') AS rate_limited,
    rate_limited / calls AS rate_limited_rate,
    countIf(error_type = 'timeout') AS timeouts,
    countIf(error_type = 'server_error') AS server_errors
FROM ${database}.spans
WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
  AND model_requested != ''
GROUP BY provider, endpoint
ORDER BY error_rate DESC, provider, endpoint
