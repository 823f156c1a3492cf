-- Per logical call (issue 16, item 2): errors and 429s of first attempts (attempt = 0), so alert
-- rates divide failed first attempts by first attempts (llm_calls - retries) instead of counting
-- every retry of a failing call again (a 30-second outage read 27.6 % per attempt, 13 % per call).
-- Rows stored before this migration read 0 (no first-attempt failures were counted then).
-- The views are redefined in place (MODIFY QUERY): same SELECTs as 0003 plus the two counters.

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

ALTER TABLE ${database}.spans_minute_mv MODIFY QUERY
SELECT
    tenant_id, service, feature, provider, model_requested, route, kind,
    toStartOfMinute(start_time) AS minute,
    count() AS spans,
    countIf(kind = 'request') AS requests,
    countIf(status = 'error') AS errors,
    sumMapIf(map(toString(error_type), toUInt64(1)), status = 'error') AS errors_by_type,
    countIf(http_status = 429 OR error_type = 'rate_limited') AS rate_limited,
    countIf(attempt > 0) AS retries,
    countIf(status = 'error' AND attempt = 0) AS first_attempt_errors,
    countIf((http_status = 429 OR error_type = 'rate_limited') AND attempt = 0) AS first_attempt_rate_limited,
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

ALTER TABLE ${database}.spans_hour_mv MODIFY QUERY
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

ALTER TABLE ${database}.spans_day_mv MODIFY QUERY
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
