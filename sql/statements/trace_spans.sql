-- One trace's spans, found through its lookup row (sql/statements/trace_locate.sql): the tenant
-- heads the sort key and the start-time range prunes days and hours, so only a few granules are
-- read (then the trace_id bloom filter). The columns the waterfall shows (spanline/traces).
SELECT ${columns}
FROM ${database}.spans
WHERE trace_id = {trace_id:String}
  AND tenant_id IN {tenants:Array(String)}
  AND start_time >= {first_start:DateTime64(3, 'UTC')}
  AND start_time <= {last_start:DateTime64(3, 'UTC')}
ORDER BY start_time, span_id
