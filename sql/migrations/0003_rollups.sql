-- Rollups of `spans` per minute, hour and day (docs/requirements.md §4), kept by materialized views, so
-- dashboards and alerts read a few thousand pre-aggregated rows instead of raw spans.
--
-- Grain: tenant × service × feature × provider × model_requested × route × kind × time bucket.
-- `kind` is part of the key, so "spans by kind" is a plain group-by and kind-specific counts
-- (requests, cache lookups, tool calls, evals) are also exact per kind.
--
-- Latency sketches hold MICROseconds (the `_us_` columns; the views divide back to ms):
-- ClickHouse's quantilesDD keeps its relative accuracy for values >= 1 only, and measured up
-- to 3x that below 1 (a 0.853 ms cache lookup came back as 0.878 ms). Sub-millisecond spans are
-- common (cache lookups), microseconds put them in the accurate range.
--
-- Beyond spans by kind, errors and tokens, each group carries what alerts and dashboards divide
-- (contract §1 of the stream windows, which compute the same columns for the same grain):
-- successful_requests, llm_calls, refusals, hallucination/recall evals, retrievals, embedding
-- mismatches, agent steps, and Map columns keyed by cache layer, model tier, routing reason,
-- responding model, tool and 'prompt_id@prompt_version'. Rates (cache hit rate, 429 rate,
-- retry amplification, cost per successful task) are derived where read, never stored.
-- input_tokens_sketch holds input tokens of LLM calls (p99 prompt size; tokens, not µs).
--
-- Engine: AggregatingMergeTree. Counters and sums are SimpleAggregateFunction(sum, …), stored as
-- plain numbers (readable with sum(), no -Merge needed); the latency sketches are real
-- AggregateFunction(quantilesDD(0.01, …)) states (DDSketch, 1% relative accuracy, mergeable
-- across rows and levels). SummingMergeTree cannot merge sketch states, and splitting sums and
-- sketches into two tables would double the MVs, the inserts and the dedup surface.
--
-- Errors by type: a sumMap-merged Map(error_type -> count) column rather than error_type as
-- a key dimension. As a dimension it would split every series into one row per error type
-- (mostly the '' of successful spans), multiplying the rows of the whole table for a count only
-- error panels need. The map's key type is String: sumMap returns Map(String, …), and the
-- stored type of a SimpleAggregateFunction must equal it.
--
-- Chaining and insert dedup: spans -> spans_minute_mv -> spans_minute -> spans_hour_mv ->
-- spans_hour -> spans_day_mv -> spans_day. Each MV sees only the block just inserted into its
-- source, so the hour and day views aggregate the (small) minute block of one raw insert, not
-- the raw rows again. With the worker's insert settings (insert_deduplication_token,
-- deduplicate_blocks_in_dependent_materialized_views=1, async_insert=0) ClickHouse derives a
-- token per dependent view from the insert's token, so a retried raw block is dropped at
-- every level; each table therefore keeps a non_replicated_deduplication_window of block hashes,
-- like `spans` (tests/test_rollups.py checks a replayed insert at all three levels).
-- A block without a token would be deduplicated by content at each level, and two distinct
-- raw blocks can aggregate to an identical minute block: always insert with a token.
--
-- Retention: minute 30 days, hour 1 year, day 3 years (fixed; they outlive the raw TTL so
-- trends survive raw expiry). Partitions are whole days (minute) or months (hour, day) so
-- ttl_only_drop_parts drops parts instead of rewriting them.

CREATE TABLE IF NOT EXISTS ${database}.spans_minute
(
    tenant_id LowCardinality(String),
    service LowCardinality(String),
    feature LowCardinality(String),
    provider LowCardinality(String),
    model_requested LowCardinality(String),
    route LowCardinality(String),
    kind LowCardinality(String),
    minute DateTime('UTC') CODEC(Delta, ZSTD(1)),
    spans SimpleAggregateFunction(sum, UInt64),
    requests SimpleAggregateFunction(sum, UInt64),  -- root spans (kind = 'request')
    errors SimpleAggregateFunction(sum, UInt64),
    errors_by_type SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    rate_limited SimpleAggregateFunction(sum, UInt64),  -- HTTP 429 or error_type rate_limited
    retries SimpleAggregateFunction(sum, UInt64),  -- spans with attempt > 0
    retry_cost_usd SimpleAggregateFunction(sum, Float64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    cache_read_tokens SimpleAggregateFunction(sum, UInt64),
    cache_write_tokens SimpleAggregateFunction(sum, UInt64),
    reasoning_tokens SimpleAggregateFunction(sum, UInt64),
    cost_usd SimpleAggregateFunction(sum, Float64),
    unpriced SimpleAggregateFunction(sum, UInt64),  -- cost_known = 0: cost_usd understates spend
    cache_lookups SimpleAggregateFunction(sum, UInt64),
    cache_hits SimpleAggregateFunction(sum, UInt64),
    context_truncations SimpleAggregateFunction(sum, UInt64),
    context_length_errors SimpleAggregateFunction(sum, UInt64),
    tool_calls SimpleAggregateFunction(sum, UInt64),
    tool_errors SimpleAggregateFunction(sum, UInt64),
    evals SimpleAggregateFunction(sum, UInt64),
    evals_passed SimpleAggregateFunction(sum, UInt64),
    successful_requests SimpleAggregateFunction(sum, UInt64),  -- kind = 'request' AND status = 'ok'
    llm_calls SimpleAggregateFunction(sum, UInt64),  -- kind = 'llm'
    refusals SimpleAggregateFunction(sum, UInt64),  -- llm spans with error_type = 'refusal'
    hallucination_evals SimpleAggregateFunction(sum, UInt64),  -- faithfulness / hallucination / groundedness evals
    hallucinations SimpleAggregateFunction(sum, UInt64),  -- those evals with eval_passed = false
    recall_evals SimpleAggregateFunction(sum, UInt64),  -- eval spans named recall@k (retrieval canaries)
    retrievals SimpleAggregateFunction(sum, UInt64),  -- kind = 'retrieval'
    embedding_mismatches SimpleAggregateFunction(sum, UInt64),  -- query embedding model != index embedding model
    agent_steps SimpleAggregateFunction(sum, UInt64),  -- kind = 'agent_step'
    recall_sum SimpleAggregateFunction(sum, Float64),  -- sum(eval_score) of the recall@k evals
    cache_lookups_by_layer SimpleAggregateFunction(sumMap, Map(String, UInt64)),  -- cache spans with a known outcome, per cache_layer
    cache_hits_by_layer SimpleAggregateFunction(sumMap, Map(String, UInt64)),  -- cache hits per cache_layer
    llm_calls_by_tier SimpleAggregateFunction(sumMap, Map(String, UInt64)),  -- llm spans per model_tier ('' = none)
    llm_calls_by_reason SimpleAggregateFunction(sumMap, Map(String, UInt64)),  -- llm spans per routing_reason
    responses_by_model SimpleAggregateFunction(sumMap, Map(String, UInt64)),  -- llm spans per model_response (the versioned model that answered)
    tool_calls_by_tool SimpleAggregateFunction(sumMap, Map(String, UInt64)),  -- tool spans per tool_name
    tool_errors_by_tool SimpleAggregateFunction(sumMap, Map(String, UInt64)),  -- failed tool spans per tool_name
    cost_by_tier SimpleAggregateFunction(sumMap, Map(String, Float64)),  -- cost of llm spans per model_tier
    cost_by_prompt SimpleAggregateFunction(sumMap, Map(String, Float64)),  -- cost per 'prompt_id@prompt_version' (spans with a prompt_id)
    duration_us_sketch AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64),
    ttft_us_sketch AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64),  -- spans with a TTFT only
    tpot_us_sketch AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64),  -- spans with a TPOT only
    input_tokens_sketch AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64)  -- input tokens of llm spans (tokens, not µs)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (tenant_id, service, feature, provider, model_requested, route, kind, minute)
TTL minute + INTERVAL 30 DAY
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.spans_minute_mv TO ${database}.spans_minute AS
SELECT
    tenant_id, service, feature, provider, model_requested, route, kind,
    toStartOfMinute(start_time) AS minute,
    count() AS spans,
    countIf(kind = 'request') AS requests,
    countIf(status = 'error') AS errors,
    sumMapIf(map(toString(error_type), toUInt64(1)), status = 'error') AS errors_by_type,
    countIf(http_status = 429 OR error_type = 'rate_limited') AS rate_limited,
    countIf(attempt > 0) AS retries,
    sumIf(raw.cost_usd, attempt > 0) AS retry_cost_usd,  -- raw.: the alias cost_usd below shadows the column
    sum(toUInt64(input_tokens)) AS input_tokens,
    sum(toUInt64(output_tokens)) AS output_tokens,
    sum(toUInt64(cache_read_tokens)) AS cache_read_tokens,
    sum(toUInt64(cache_write_tokens)) AS cache_write_tokens,
    sum(toUInt64(reasoning_tokens)) AS reasoning_tokens,
    sum(cost_usd) AS cost_usd,
    countIf(NOT cost_known) AS unpriced,
    countIf(kind = 'cache') AS cache_lookups,
    countIf(kind = 'cache' AND cache_hit = true) AS cache_hits,
    countIf(context_truncated) AS context_truncations,
    countIf(error_type = 'context_length_exceeded') AS context_length_errors,
    countIf(kind = 'tool') AS tool_calls,
    countIf(kind = 'tool' AND status = 'error') AS tool_errors,
    countIf(kind = 'eval') AS evals,
    countIf(kind = 'eval' AND eval_passed = true) AS evals_passed,
    countIf(kind = 'request' AND status = 'ok') AS successful_requests,
    countIf(kind = 'llm') AS llm_calls,
    countIf(kind = 'llm' AND error_type = 'refusal') AS refusals,
    countIf(kind = 'eval' AND eval_name IN ('faithfulness', 'hallucination', 'groundedness')) AS hallucination_evals,
    countIf(kind = 'eval' AND eval_name IN ('faithfulness', 'hallucination', 'groundedness') AND eval_passed = false) AS hallucinations,
    countIf(kind = 'eval' AND startsWith(eval_name, 'recall@')) AS recall_evals,
    countIf(kind = 'retrieval') AS retrievals,
    countIf(embedding_model != '' AND index_embedding_model != '' AND embedding_model != index_embedding_model) AS embedding_mismatches,
    countIf(kind = 'agent_step') AS agent_steps,
    sumIf(ifNull(eval_score, 0), kind = 'eval' AND startsWith(eval_name, 'recall@')) AS recall_sum,
    sumMapIf(map(toString(cache_layer), toUInt64(1)), kind = 'cache' AND cache_hit IS NOT NULL) AS cache_lookups_by_layer,
    sumMapIf(map(toString(cache_layer), toUInt64(1)), kind = 'cache' AND cache_hit = true) AS cache_hits_by_layer,
    sumMapIf(map(toString(model_tier), toUInt64(1)), kind = 'llm') AS llm_calls_by_tier,
    sumMapIf(map(toString(routing_reason), toUInt64(1)), kind = 'llm') AS llm_calls_by_reason,
    sumMapIf(map(toString(model_response), toUInt64(1)), kind = 'llm' AND model_response != '') AS responses_by_model,
    sumMapIf(map(toString(tool_name), toUInt64(1)), kind = 'tool') AS tool_calls_by_tool,
    sumMapIf(map(toString(tool_name), toUInt64(1)), kind = 'tool' AND status = 'error') AS tool_errors_by_tool,
    sumMapIf(map(toString(model_tier), raw.cost_usd), kind = 'llm') AS cost_by_tier,
    sumMapIf(map(concat(toString(prompt_id), '@', toString(prompt_version)), raw.cost_usd), prompt_id != '') AS cost_by_prompt,
    quantilesDDState(0.01, 0.5, 0.95, 0.99)(duration_ms * 1000) AS duration_us_sketch,
    quantilesDDStateIf(0.01, 0.5, 0.95, 0.99)(assumeNotNull(ttft_ms) * 1000, ttft_ms IS NOT NULL) AS ttft_us_sketch,
    quantilesDDStateIf(0.01, 0.5, 0.95, 0.99)(assumeNotNull(tpot_ms) * 1000, tpot_ms IS NOT NULL) AS tpot_us_sketch,
    quantilesDDStateIf(0.01, 0.5, 0.95, 0.99)(toFloat64(raw.input_tokens), kind = 'llm') AS input_tokens_sketch
FROM ${database}.spans AS raw
GROUP BY tenant_id, service, feature, provider, model_requested, route, kind, minute;

CREATE TABLE IF NOT EXISTS ${database}.spans_hour
(
    tenant_id LowCardinality(String),
    service LowCardinality(String),
    feature LowCardinality(String),
    provider LowCardinality(String),
    model_requested LowCardinality(String),
    route LowCardinality(String),
    kind LowCardinality(String),
    hour DateTime('UTC') CODEC(Delta, ZSTD(1)),
    spans SimpleAggregateFunction(sum, UInt64),
    requests SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    errors_by_type SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    rate_limited SimpleAggregateFunction(sum, UInt64),
    retries SimpleAggregateFunction(sum, UInt64),
    retry_cost_usd SimpleAggregateFunction(sum, Float64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    cache_read_tokens SimpleAggregateFunction(sum, UInt64),
    cache_write_tokens SimpleAggregateFunction(sum, UInt64),
    reasoning_tokens SimpleAggregateFunction(sum, UInt64),
    cost_usd SimpleAggregateFunction(sum, Float64),
    unpriced SimpleAggregateFunction(sum, UInt64),
    cache_lookups SimpleAggregateFunction(sum, UInt64),
    cache_hits SimpleAggregateFunction(sum, UInt64),
    context_truncations SimpleAggregateFunction(sum, UInt64),
    context_length_errors SimpleAggregateFunction(sum, UInt64),
    tool_calls SimpleAggregateFunction(sum, UInt64),
    tool_errors SimpleAggregateFunction(sum, UInt64),
    evals SimpleAggregateFunction(sum, UInt64),
    evals_passed SimpleAggregateFunction(sum, UInt64),
    successful_requests SimpleAggregateFunction(sum, UInt64),
    llm_calls SimpleAggregateFunction(sum, UInt64),
    refusals SimpleAggregateFunction(sum, UInt64),
    hallucination_evals SimpleAggregateFunction(sum, UInt64),
    hallucinations SimpleAggregateFunction(sum, UInt64),
    recall_evals SimpleAggregateFunction(sum, UInt64),
    retrievals SimpleAggregateFunction(sum, UInt64),
    embedding_mismatches SimpleAggregateFunction(sum, UInt64),
    agent_steps SimpleAggregateFunction(sum, UInt64),
    recall_sum SimpleAggregateFunction(sum, Float64),
    cache_lookups_by_layer SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    cache_hits_by_layer SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    llm_calls_by_tier SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    llm_calls_by_reason SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    responses_by_model SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    tool_calls_by_tool SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    tool_errors_by_tool SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    cost_by_tier SimpleAggregateFunction(sumMap, Map(String, Float64)),
    cost_by_prompt SimpleAggregateFunction(sumMap, Map(String, Float64)),
    duration_us_sketch AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64),
    ttft_us_sketch AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64),
    tpot_us_sketch AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64),
    input_tokens_sketch AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant_id, service, feature, provider, model_requested, route, kind, hour)
TTL hour + INTERVAL 365 DAY
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.spans_hour_mv TO ${database}.spans_hour AS
SELECT
    tenant_id, service, feature, provider, model_requested, route, kind,
    toStartOfHour(minute) AS hour,
    sum(spans) AS spans,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sumMap(errors_by_type) AS errors_by_type,
    sum(rate_limited) AS rate_limited,
    sum(retries) AS retries,
    sum(retry_cost_usd) AS retry_cost_usd,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost_usd) AS cost_usd,
    sum(unpriced) AS unpriced,
    sum(cache_lookups) AS cache_lookups,
    sum(cache_hits) AS cache_hits,
    sum(context_truncations) AS context_truncations,
    sum(context_length_errors) AS context_length_errors,
    sum(tool_calls) AS tool_calls,
    sum(tool_errors) AS tool_errors,
    sum(evals) AS evals,
    sum(evals_passed) AS evals_passed,
    sum(successful_requests) AS successful_requests,
    sum(llm_calls) AS llm_calls,
    sum(refusals) AS refusals,
    sum(hallucination_evals) AS hallucination_evals,
    sum(hallucinations) AS hallucinations,
    sum(recall_evals) AS recall_evals,
    sum(retrievals) AS retrievals,
    sum(embedding_mismatches) AS embedding_mismatches,
    sum(agent_steps) AS agent_steps,
    sum(recall_sum) AS recall_sum,
    sumMap(cache_lookups_by_layer) AS cache_lookups_by_layer,
    sumMap(cache_hits_by_layer) AS cache_hits_by_layer,
    sumMap(llm_calls_by_tier) AS llm_calls_by_tier,
    sumMap(llm_calls_by_reason) AS llm_calls_by_reason,
    sumMap(responses_by_model) AS responses_by_model,
    sumMap(tool_calls_by_tool) AS tool_calls_by_tool,
    sumMap(tool_errors_by_tool) AS tool_errors_by_tool,
    sumMap(cost_by_tier) AS cost_by_tier,
    sumMap(cost_by_prompt) AS cost_by_prompt,
    quantilesDDMergeState(0.01, 0.5, 0.95, 0.99)(duration_us_sketch) AS duration_us_sketch,
    quantilesDDMergeState(0.01, 0.5, 0.95, 0.99)(ttft_us_sketch) AS ttft_us_sketch,
    quantilesDDMergeState(0.01, 0.5, 0.95, 0.99)(tpot_us_sketch) AS tpot_us_sketch,
    quantilesDDMergeState(0.01, 0.5, 0.95, 0.99)(input_tokens_sketch) AS input_tokens_sketch
FROM ${database}.spans_minute
GROUP BY tenant_id, service, feature, provider, model_requested, route, kind, hour;

CREATE TABLE IF NOT EXISTS ${database}.spans_day
(
    tenant_id LowCardinality(String),
    service LowCardinality(String),
    feature LowCardinality(String),
    provider LowCardinality(String),
    model_requested LowCardinality(String),
    route LowCardinality(String),
    kind LowCardinality(String),
    day Date CODEC(Delta, ZSTD(1)),
    spans SimpleAggregateFunction(sum, UInt64),
    requests SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    errors_by_type SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    rate_limited SimpleAggregateFunction(sum, UInt64),
    retries SimpleAggregateFunction(sum, UInt64),
    retry_cost_usd SimpleAggregateFunction(sum, Float64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    cache_read_tokens SimpleAggregateFunction(sum, UInt64),
    cache_write_tokens SimpleAggregateFunction(sum, UInt64),
    reasoning_tokens SimpleAggregateFunction(sum, UInt64),
    cost_usd SimpleAggregateFunction(sum, Float64),
    unpriced SimpleAggregateFunction(sum, UInt64),
    cache_lookups SimpleAggregateFunction(sum, UInt64),
    cache_hits SimpleAggregateFunction(sum, UInt64),
    context_truncations SimpleAggregateFunction(sum, UInt64),
    context_length_errors SimpleAggregateFunction(sum, UInt64),
    tool_calls SimpleAggregateFunction(sum, UInt64),
    tool_errors SimpleAggregateFunction(sum, UInt64),
    evals SimpleAggregateFunction(sum, UInt64),
    evals_passed SimpleAggregateFunction(sum, UInt64),
    successful_requests SimpleAggregateFunction(sum, UInt64),
    llm_calls SimpleAggregateFunction(sum, UInt64),
    refusals SimpleAggregateFunction(sum, UInt64),
    hallucination_evals SimpleAggregateFunction(sum, UInt64),
    hallucinations SimpleAggregateFunction(sum, UInt64),
    recall_evals SimpleAggregateFunction(sum, UInt64),
    retrievals SimpleAggregateFunction(sum, UInt64),
    embedding_mismatches SimpleAggregateFunction(sum, UInt64),
    agent_steps SimpleAggregateFunction(sum, UInt64),
    recall_sum SimpleAggregateFunction(sum, Float64),
    cache_lookups_by_layer SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    cache_hits_by_layer SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    llm_calls_by_tier SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    llm_calls_by_reason SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    responses_by_model SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    tool_calls_by_tool SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    tool_errors_by_tool SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    cost_by_tier SimpleAggregateFunction(sumMap, Map(String, Float64)),
    cost_by_prompt SimpleAggregateFunction(sumMap, Map(String, Float64)),
    duration_us_sketch AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64),
    ttft_us_sketch AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64),
    tpot_us_sketch AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64),
    input_tokens_sketch AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, service, feature, provider, model_requested, route, kind, day)
TTL day + INTERVAL 3 YEAR
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.spans_day_mv TO ${database}.spans_day AS
SELECT
    tenant_id, service, feature, provider, model_requested, route, kind,
    toDate(hour) AS day,
    sum(spans) AS spans,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sumMap(errors_by_type) AS errors_by_type,
    sum(rate_limited) AS rate_limited,
    sum(retries) AS retries,
    sum(retry_cost_usd) AS retry_cost_usd,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost_usd) AS cost_usd,
    sum(unpriced) AS unpriced,
    sum(cache_lookups) AS cache_lookups,
    sum(cache_hits) AS cache_hits,
    sum(context_truncations) AS context_truncations,
    sum(context_length_errors) AS context_length_errors,
    sum(tool_calls) AS tool_calls,
    sum(tool_errors) AS tool_errors,
    sum(evals) AS evals,
    sum(evals_passed) AS evals_passed,
    sum(successful_requests) AS successful_requests,
    sum(llm_calls) AS llm_calls,
    sum(refusals) AS refusals,
    sum(hallucination_evals) AS hallucination_evals,
    sum(hallucinations) AS hallucinations,
    sum(recall_evals) AS recall_evals,
    sum(retrievals) AS retrievals,
    sum(embedding_mismatches) AS embedding_mismatches,
    sum(agent_steps) AS agent_steps,
    sum(recall_sum) AS recall_sum,
    sumMap(cache_lookups_by_layer) AS cache_lookups_by_layer,
    sumMap(cache_hits_by_layer) AS cache_hits_by_layer,
    sumMap(llm_calls_by_tier) AS llm_calls_by_tier,
    sumMap(llm_calls_by_reason) AS llm_calls_by_reason,
    sumMap(responses_by_model) AS responses_by_model,
    sumMap(tool_calls_by_tool) AS tool_calls_by_tool,
    sumMap(tool_errors_by_tool) AS tool_errors_by_tool,
    sumMap(cost_by_tier) AS cost_by_tier,
    sumMap(cost_by_prompt) AS cost_by_prompt,
    quantilesDDMergeState(0.01, 0.5, 0.95, 0.99)(duration_us_sketch) AS duration_us_sketch,
    quantilesDDMergeState(0.01, 0.5, 0.95, 0.99)(ttft_us_sketch) AS ttft_us_sketch,
    quantilesDDMergeState(0.01, 0.5, 0.95, 0.99)(tpot_us_sketch) AS tpot_us_sketch,
    quantilesDDMergeState(0.01, 0.5, 0.95, 0.99)(input_tokens_sketch) AS input_tokens_sketch
FROM ${database}.spans_hour
GROUP BY tenant_id, service, feature, provider, model_requested, route, kind, day;

-- Daily spend per tenant × feature × model, for cost dashboards. `requests` counts root
-- spans, which carry no model (model_requested = ''); per-model volume is `llm_calls`.
CREATE VIEW IF NOT EXISTS ${database}.spend_by_day AS
SELECT
    tenant_id, feature, model_requested AS model, day,
    sum(cost_usd) AS cost_usd,
    sum(unpriced) AS unpriced_spans,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(requests) AS requests,
    sumIf(spans, kind = 'llm') AS llm_calls
FROM ${database}.spans_day
GROUP BY tenant_id, feature, model, day;

-- p50/p95/p99 per series and minute (or hour) from the merged sketches. A percentile over
-- several series (e.g. a whole tenant) must merge the sketches of the rollup table itself:
-- quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(duration_us_sketch) / 1000 (µs -> ms) with the wanted GROUP BY.
CREATE VIEW IF NOT EXISTS ${database}.latency_percentiles_minute AS
SELECT
    tenant_id, service, feature, provider, model_requested, route, kind, minute,
    sum(spans) AS spans,
    quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(duration_us_sketch) AS duration_us_q,
    quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(ttft_us_sketch) AS ttft_us_q,
    quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(tpot_us_sketch) AS tpot_us_q,
    duration_us_q[1] / 1000 AS duration_p50_ms, duration_us_q[2] / 1000 AS duration_p95_ms, duration_us_q[3] / 1000 AS duration_p99_ms,
    ttft_us_q[1] / 1000 AS ttft_p50_ms, ttft_us_q[2] / 1000 AS ttft_p95_ms, ttft_us_q[3] / 1000 AS ttft_p99_ms,
    tpot_us_q[1] / 1000 AS tpot_p50_ms, tpot_us_q[2] / 1000 AS tpot_p95_ms, tpot_us_q[3] / 1000 AS tpot_p99_ms
FROM ${database}.spans_minute
GROUP BY tenant_id, service, feature, provider, model_requested, route, kind, minute;

CREATE VIEW IF NOT EXISTS ${database}.latency_percentiles_hour AS
SELECT
    tenant_id, service, feature, provider, model_requested, route, kind, hour,
    sum(spans) AS spans,
    quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(duration_us_sketch) AS duration_us_q,
    quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(ttft_us_sketch) AS ttft_us_q,
    quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(tpot_us_sketch) AS tpot_us_q,
    duration_us_q[1] / 1000 AS duration_p50_ms, duration_us_q[2] / 1000 AS duration_p95_ms, duration_us_q[3] / 1000 AS duration_p99_ms,
    ttft_us_q[1] / 1000 AS ttft_p50_ms, ttft_us_q[2] / 1000 AS ttft_p95_ms, ttft_us_q[3] / 1000 AS ttft_p99_ms,
    tpot_us_q[1] / 1000 AS tpot_p50_ms, tpot_us_q[2] / 1000 AS tpot_p95_ms, tpot_us_q[3] / 1000 AS tpot_p99_ms
FROM ${database}.spans_hour
GROUP BY tenant_id, service, feature, provider, model_requested, route, kind, hour;
