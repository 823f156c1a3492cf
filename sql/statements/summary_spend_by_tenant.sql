-- The demo summary's spend per tenant and per thousand requests (spanline/summary.py).
SELECT tenant_id AS tenant, uniqExact(trace_id) AS requests, round(sum(cost_usd), 4) AS spend_usd,
       round(sum(cost_usd) / uniqExact(trace_id) * 1000, 4) AS usd_per_1k_requests
FROM ${database}.spans GROUP BY tenant ORDER BY spend_usd DESC
