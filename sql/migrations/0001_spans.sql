-- Raw spans: one row per validated, priced span. The worker is the only writer and inserts
-- these exact columns (streams/frame.py TABLE_COLUMNS); rows are never updated.
--
-- ORDER BY runs from low to high cardinality so the sparse primary index prunes the filters
-- every dashboard and tenant-scoped query starts with: tenant_id (isolation), service,
-- feature, kind (e.g. only llm spans), then the hour. The hour bucket comes before the
-- higher-cardinality model_requested so a time-range filter still prunes granules within a
-- tenant/feature, while per-model group-bys inside an hour read contiguous rows. start_time
-- last keeps rows time-sorted inside the bucket, which helps its Delta codec. trace_id is
-- random, so it is found through the bloom-filter skip index instead of the sort key.
--
-- Daily partitions (toDate(start_time)) let the TTL drop whole parts (ttl_only_drop_parts)
-- instead of rewriting them. non_replicated_deduplication_window keeps the hashes of recent
-- insert blocks, so a redelivered batch inserted again with the same
-- insert_deduplication_token is dropped (the worker's ledger re-forms it with that token).
--
-- Codecs: Delta + ZSTD on timestamps and the Kafka offset (monotone within a batch), ZSTD on
-- the long or random strings, arrays and the attribute map; LowCardinality on every
-- dimension with a bounded set of values (dictionary-encoded, and fast to group by).
CREATE TABLE IF NOT EXISTS ${database}.spans
(
    tenant_id LowCardinality(String),
    service LowCardinality(String),
    feature LowCardinality(String),
    environment LowCardinality(String),
    kind LowCardinality(String),
    name LowCardinality(String),
    start_time DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    end_time DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    duration_ms Float64 CODEC(ZSTD(1)),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    parent_span_id String CODEC(ZSTD(1)),  -- '' = root span
    status LowCardinality(String),
    error_type LowCardinality(String),
    http_status UInt16,  -- 0 = no HTTP status
    retry_after_s Nullable(Float32),
    attempt UInt16,
    finish_reason LowCardinality(String),
    provider LowCardinality(String),
    endpoint LowCardinality(String),
    region LowCardinality(String),
    model_requested LowCardinality(String),
    model_response LowCardinality(String),
    input_tokens UInt32,
    output_tokens UInt32,
    cache_read_tokens UInt32,
    cache_write_tokens UInt32,
    reasoning_tokens UInt32,
    context_window UInt32,  -- 0 = unknown
    context_truncated Bool,
    ttft_ms Nullable(Float64),
    tpot_ms Nullable(Float64),
    cache_hit Nullable(Bool),
    cache_layer LowCardinality(String),
    cache_similarity Nullable(Float32),
    route LowCardinality(String),
    model_tier LowCardinality(String),
    routing_reason LowCardinality(String),
    fallback_from LowCardinality(String),
    prompt_id LowCardinality(String),
    prompt_version LowCardinality(String),
    prompt_hash String CODEC(ZSTD(1)),
    user_id_hash String CODEC(ZSTD(1)),
    session_id String CODEC(ZSTD(1)),
    index_name LowCardinality(String),
    top_k Nullable(UInt32),
    retrieval_doc_ids Array(String) CODEC(ZSTD(1)),
    retrieval_scores Array(Float32) CODEC(ZSTD(1)),
    embedding_model LowCardinality(String),
    index_embedding_model LowCardinality(String),
    tool_name LowCardinality(String),
    eval_name LowCardinality(String),
    eval_score Nullable(Float64),
    eval_passed Nullable(Bool),
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    cost_usd_reported Nullable(Float64),
    content String CODEC(ZSTD(3)),
    input_cost_usd Float64,
    cache_read_cost_usd Float64,
    cache_write_cost_usd Float64,
    output_cost_usd Float64,
    cost_usd Float64,
    cost_known Bool,
    price_source LowCardinality(String),
    price_version LowCardinality(String),
    schema_version UInt8,
    source LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64 CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toDate(start_time)
ORDER BY (tenant_id, service, feature, kind, toStartOfHour(start_time), model_requested, start_time)
${spans_ttl}
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;
