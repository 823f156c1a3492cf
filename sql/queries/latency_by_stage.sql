-- name: latency_by_stage
-- question: How long does each stage take? p50/p95/p99 of duration_ms and of TTFT per span kind
--   and model (model '' = stages that call no model). Percentiles are exact and interpolated
--   (quantileExactInclusive, Excel PERCENTILE.INC / numpy's default); TTFT percentiles cover
--   only streamed calls and are NULL where none streamed.
-- param: since DateTime64(3, 'UTC')
-- param: until DateTime64(3, 'UTC')
-- param: tenant String = ''
SELECT
    kind,
    model_requested AS model,
    count() AS spans,
    quantileExactInclusive(0.5)(duration_ms) AS p50_ms,
    quantileExactInclusive(0.95)(duration_ms) AS p95_ms,
    quantileExactInclusive(0.99)(duration_ms) AS p99_ms,
    if(count(ttft_ms) > 0, quantileExactInclusive(0.5)(ttft_ms), NULL) AS ttft_p50_ms,
    if(count(ttft_ms) > 0, quantileExactInclusive(0.95)(ttft_ms), NULL) AS ttft_p95_ms,
    if(count(ttft_ms) > 0, quantileExactInclusive(0.99)(ttft_ms), NULL) AS ttft_p99_ms
FROM ${database}.spans
WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
GROUP BY kind, model
ORDER BY kind, model
