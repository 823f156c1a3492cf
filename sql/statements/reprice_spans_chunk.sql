-- The stored spans of one re-pricing chunk (streams/reprice.py): what the price catalog needs,
-- the span's identity, the rollup grain and the cost it was stored with.
SELECT
    tenant_id, trace_id, span_id, kafka_partition, kafka_offset, start_time,
    service, feature, provider, model_requested, model_response, route, kind, attempt,
    model_tier, prompt_id, prompt_version,
    ${tokens},
    input_cost_usd, cache_read_cost_usd, cache_write_cost_usd, output_cost_usd, cost_usd,
    cost_known, price_source, price_version, price_entry
FROM ${database}.spans
WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
ORDER BY tenant_id, trace_id, span_id, kafka_partition, kafka_offset
