-- `spanline traces`, alert example traces and the report's waterfalls: the traces of a window
-- ranked by one figure. rank: slowest (wall time, first start to last end), costliest (sum of
-- cost_usd), failed (traces with failed spans; failed roots first) or retried (spans with
-- attempt > 0). A trace is in scope when any of its spans matches every scope filter ('' = any):
-- tenant, service, feature, provider, model (requested), route.
SELECT trace_id, tenant_id AS tenant,
       anyIf(feature, parent_span_id = '') AS root_feature,
       anyIf(name, parent_span_id = '') AS root_name,
       min(start_time) AS started,
       toFloat64(dateDiff('millisecond', min(start_time), max(end_time))) AS duration_ms,
       sum(cost_usd) AS cost_usd,
       sum(input_tokens) + sum(output_tokens) AS tokens,
       count() AS spans,
       countIf(status = 'error') AS errors,
       countIf(status = 'error' AND parent_span_id = '') > 0 AS root_failed,
       countIf(attempt > 0) AS retries
FROM ${database}.spans
WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
  AND trace_id IN (
      SELECT trace_id FROM ${database}.spans
      WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
        AND ({tenant:String} = '' OR tenant_id = {tenant:String})
        AND ({service:String} = '' OR service = {service:String})
        AND ({feature:String} = '' OR feature = {feature:String})
        AND ({provider:String} = '' OR provider = {provider:String})
        AND ({model:String} = '' OR model_requested = {model:String})
        AND ({route:String} = '' OR route = {route:String})
  )
GROUP BY tenant_id, trace_id
HAVING multiIf({rank:String} = 'failed', errors > 0, {rank:String} = 'retried', retries > 0, 1)
ORDER BY multiIf(
             {rank:String} = 'slowest', duration_ms,
             {rank:String} = 'costliest', cost_usd,
             {rank:String} = 'failed', toFloat64(root_failed) * 1e9 + errors,
             toFloat64(retries)
         ) DESC,
         duration_ms DESC, trace_id
LIMIT {limit:UInt32}
