-- Schema 1.1's token details (spanline/contract/schema.py TOKEN_DETAIL_FIELDS): parts of the 1.0
-- counts that price lists charge at their own rate. Cache writes by time-to-live (Anthropic's
-- 1-hour writes cost 2x the base input rate, its 5-minute ones 1.25x), and audio and image tokens
-- of input (cached reads of them included) and output. Rows stored before this migration read 0,
-- which is what a span without the details means: priced as the count each detail is part of.
-- The rollups keep the 1.0 counts only; their cost sums already include what these classes cost.
ALTER TABLE ${database}.spans
    ADD COLUMN IF NOT EXISTS cache_write_5m_tokens UInt32 DEFAULT 0 AFTER reasoning_tokens,
    ADD COLUMN IF NOT EXISTS cache_write_1h_tokens UInt32 DEFAULT 0 AFTER cache_write_5m_tokens,
    ADD COLUMN IF NOT EXISTS input_audio_tokens UInt32 DEFAULT 0 AFTER cache_write_1h_tokens,
    ADD COLUMN IF NOT EXISTS cache_audio_read_tokens UInt32 DEFAULT 0 AFTER input_audio_tokens,
    ADD COLUMN IF NOT EXISTS input_image_tokens UInt32 DEFAULT 0 AFTER cache_audio_read_tokens,
    ADD COLUMN IF NOT EXISTS cache_image_read_tokens UInt32 DEFAULT 0 AFTER input_image_tokens,
    ADD COLUMN IF NOT EXISTS output_audio_tokens UInt32 DEFAULT 0 AFTER cache_image_read_tokens,
    ADD COLUMN IF NOT EXISTS output_image_tokens UInt32 DEFAULT 0 AFTER output_audio_tokens;

-- Re-pricing (`spanline reprice`, streams/reprice.py): one row per span whose cost a re-pricing
-- changed, with its cost before (what the rollups held) and after. A row is the rollups' record
-- of the change: inserting it adds (after - before) to spans_minute through the view below, and
-- from there to spans_hour and spans_day, in the same insert. `token` names the chunk the row was
-- written with (its insert_deduplication_token, a hash of its content), so a rerun that finds the
-- token here knows the rollups already have the chunk. The newest row of a span (repriced_at)
-- holds the cost the rollups reflect; the spans row is then rewritten to it. Kept 3 years, like
-- spans_day, as the audit trail of every correction.
CREATE TABLE IF NOT EXISTS ${database}.span_cost_deltas
(
    token String CODEC(ZSTD(1)),
    repriced_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    tenant_id LowCardinality(String),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    kafka_partition Int32,
    kafka_offset Int64,
    start_time DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    service LowCardinality(String),
    feature LowCardinality(String),
    provider LowCardinality(String),
    model_requested LowCardinality(String),
    model_response LowCardinality(String),
    route LowCardinality(String),
    kind LowCardinality(String),
    attempt UInt16,
    model_tier LowCardinality(String),
    prompt_id LowCardinality(String),
    prompt_version LowCardinality(String),
    old_input_cost_usd Float64,
    old_cache_read_cost_usd Float64,
    old_cache_write_cost_usd Float64,
    old_output_cost_usd Float64,
    old_cost_usd Float64,
    old_cost_known Bool,
    old_price_source LowCardinality(String),
    old_price_version LowCardinality(String),
    old_price_entry LowCardinality(String),
    input_cost_usd Float64,
    cache_read_cost_usd Float64,
    cache_write_cost_usd Float64,
    output_cost_usd Float64,
    cost_usd Float64,
    cost_known Bool,
    price_source LowCardinality(String),
    price_version LowCardinality(String),
    price_entry LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(start_time)
ORDER BY (tenant_id, toStartOfDay(start_time), trace_id, span_id)
TTL toDateTime(start_time) + INTERVAL 3 YEAR
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

-- The change a delta row makes to the minute rollup: the cost columns only (every count and
-- sketch of the row is its empty default). `unpriced` is a UInt64 sum: a span that became priced
-- adds 2^64 - 1, which UInt64 addition (modulo 2^64, in inserts, merges and sum()) turns into -1.
CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.span_cost_deltas_mv TO ${database}.spans_minute AS
SELECT
    tenant_id, service, feature, provider, model_requested, route, kind,
    toStartOfMinute(start_time) AS minute,
    sumIf(delta.cost_usd - delta.old_cost_usd, attempt > 0) AS retry_cost_usd,
    sum(delta.cost_usd - delta.old_cost_usd) AS cost_usd,
    sum(toUInt64(toInt64(NOT delta.cost_known) - toInt64(NOT delta.old_cost_known))) AS unpriced,
    sumMapIf(map(toString(model_tier), delta.cost_usd - delta.old_cost_usd), kind = 'llm') AS cost_by_tier,
    sumMapIf(
        map(concat(toString(prompt_id), '@', toString(prompt_version)), delta.cost_usd - delta.old_cost_usd),
        prompt_id != ''
    ) AS cost_by_prompt
FROM ${database}.span_cost_deltas AS delta
GROUP BY tenant_id, service, feature, provider, model_requested, route, kind, minute;
