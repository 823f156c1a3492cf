-- Per logical call (issue 16, item 2): errors and 429s of first attempts (attempt = 0), so alert
-- rates divide failed first attempts by first attempts (llm_calls - retries) instead of counting
-- every retry of a failing call again (a 30-second outage read 27.6 % per attempt, 13 % per call).
-- Rows stored before this migration read 0 (no first-attempt failures were counted then).
-- The hour and day views are dropped and created again: same SELECTs as 0003 plus the two
-- counters. Not ALTER ... MODIFY QUERY: a view modified in place derived other deduplication tokens
-- in the process that altered it than after a restart, so a batch replayed after a crash was added
-- to spans_hour and spans_day a second time (tests/chaos, CHAOS_SEED=1966426864). Stop the workers
-- before applying this, as for 0010: a block inserted between the DROP and the CREATE would miss
-- its hour and day. The minute rollup is the worker's since 0010 (streams/rollup.py fills the counters from
-- spanline/windows/aggregate.py); sql/statements/minute_rollup_select.sql is its SQL form.

ALTER TABLE ${database}.spans_minute
    ADD COLUMN IF NOT EXISTS first_attempt_errors SimpleAggregateFunction(sum, UInt64) DEFAULT 0 AFTER retries,
    ADD COLUMN IF NOT EXISTS first_attempt_rate_limited SimpleAggregateFunction(sum, UInt64) DEFAULT 0
        AFTER first_attempt_errors;

ALTER TABLE ${database}.spans_hour
    ADD COLUMN IF NOT EXISTS first_attempt_errors SimpleAggregateFunction(sum, UInt64) DEFAULT 0 AFTER retries,
    ADD COLUMN IF NOT EXISTS first_attempt_rate_limited SimpleAggregateFunction(sum, UInt64) DEFAULT 0
        AFTER first_attempt_errors;

ALTER TABLE ${database}.spans_day
    ADD COLUMN IF NOT EXISTS first_attempt_errors SimpleAggregateFunction(sum, UInt64) DEFAULT 0 AFTER retries,
    ADD COLUMN IF NOT EXISTS first_attempt_rate_limited SimpleAggregateFunction(sum, UInt64) DEFAULT 0
        AFTER first_attempt_errors;

DROP VIEW IF EXISTS ${database}.spans_hour_mv;

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
    sum(first_attempt_errors) AS first_attempt_errors,
    sum(first_attempt_rate_limited) AS first_attempt_rate_limited,
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

DROP VIEW IF EXISTS ${database}.spans_day_mv;

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
    sum(first_attempt_errors) AS first_attempt_errors,
    sum(first_attempt_rate_limited) AS first_attempt_rate_limited,
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
