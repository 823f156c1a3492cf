-- The demo summary's LLM latency percentiles (ms) and error share per model (spanline/summary.py).
SELECT model_requested AS model, count() AS calls,
       round(quantile(0.5)(duration_ms)) AS p50, round(quantile(0.95)(duration_ms)) AS p95,
       round(quantile(0.95)(ttft_ms)) AS ttft_p95,
       round(countIf(status = 'error') / count() * 100, 2) AS error_pct
FROM ${database}.spans WHERE kind = 'llm' GROUP BY model ORDER BY calls DESC
