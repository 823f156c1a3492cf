-- Per span of a re-pricing chunk, the cost its newest correction set: what the rollups hold for
-- it, whether or not the spans row was rewritten yet (streams/reprice.py).
SELECT
    tenant_id, trace_id, span_id, kafka_partition, kafka_offset,
    argMax(input_cost_usd, repriced_at) AS input_cost_usd,
    argMax(cache_read_cost_usd, repriced_at) AS cache_read_cost_usd,
    argMax(cache_write_cost_usd, repriced_at) AS cache_write_cost_usd,
    argMax(output_cost_usd, repriced_at) AS output_cost_usd,
    argMax(cost_usd, repriced_at) AS cost_usd,
    argMax(cost_known, repriced_at) AS cost_known,
    argMax(price_source, repriced_at) AS price_source,
    argMax(price_version, repriced_at) AS price_version,
    argMax(price_entry, repriced_at) AS price_entry
FROM ${database}.span_cost_deltas
WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
GROUP BY tenant_id, trace_id, span_id, kafka_partition, kafka_offset
