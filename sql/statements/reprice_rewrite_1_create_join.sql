-- The new costs of the spans a re-pricing chunk rewrites, keyed by span identity, in a Join
-- table that the rewrite reads with joinGet (streams/reprice.py; dropped after the rewrite).
-- `present` is 1 in every row: joinGet answers 0 for a span that is not in the table.
CREATE TABLE IF NOT EXISTS ${database}.${join}
(
    tenant_id LowCardinality(String),
    trace_id String,
    span_id String,
    kafka_partition Int32,
    kafka_offset Int64,
    input_cost_usd Float64,
    cache_read_cost_usd Float64,
    cache_write_cost_usd Float64,
    output_cost_usd Float64,
    cost_usd Float64,
    cost_known Bool,
    price_source String,
    price_version String,
    price_entry String,
    present UInt8
)
ENGINE = Join(ANY, LEFT, tenant_id, trace_id, span_id, kafka_partition, kafka_offset)
