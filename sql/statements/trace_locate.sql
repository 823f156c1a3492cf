-- Where one trace's spans are (sql/migrations/0007_trace_lookup.sql): per tenant, the earliest
-- and latest span start. A primary-key lookup; no row = spans stored before the lookup existed.
SELECT tenant_id, min(start_time) AS first_start, max(last_start) AS last_start
FROM ${database}.trace_index
WHERE trace_id = {trace_id:String}
GROUP BY tenant_id
ORDER BY tenant_id
