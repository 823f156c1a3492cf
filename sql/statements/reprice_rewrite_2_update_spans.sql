-- Rewrites the cost columns of the spans in the Join table to their new values, and waits until
-- done. A mutation sets absolute values, so running it again changes nothing (streams/reprice.py).
ALTER TABLE ${database}.spans
UPDATE
    input_cost_usd = joinGet('${database}.${join}', 'input_cost_usd', tenant_id, trace_id, span_id, kafka_partition, kafka_offset),
    cache_read_cost_usd = joinGet('${database}.${join}', 'cache_read_cost_usd', tenant_id, trace_id, span_id, kafka_partition, kafka_offset),
    cache_write_cost_usd = joinGet('${database}.${join}', 'cache_write_cost_usd', tenant_id, trace_id, span_id, kafka_partition, kafka_offset),
    output_cost_usd = joinGet('${database}.${join}', 'output_cost_usd', tenant_id, trace_id, span_id, kafka_partition, kafka_offset),
    cost_usd = joinGet('${database}.${join}', 'cost_usd', tenant_id, trace_id, span_id, kafka_partition, kafka_offset),
    cost_known = joinGet('${database}.${join}', 'cost_known', tenant_id, trace_id, span_id, kafka_partition, kafka_offset),
    price_source = joinGet('${database}.${join}', 'price_source', tenant_id, trace_id, span_id, kafka_partition, kafka_offset),
    price_version = joinGet('${database}.${join}', 'price_version', tenant_id, trace_id, span_id, kafka_partition, kafka_offset),
    price_entry = joinGet('${database}.${join}', 'price_entry', tenant_id, trace_id, span_id, kafka_partition, kafka_offset)
WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
  AND joinGet('${database}.${join}', 'present', tenant_id, trace_id, span_id, kafka_partition, kafka_offset) = 1
SETTINGS mutations_sync = 2
