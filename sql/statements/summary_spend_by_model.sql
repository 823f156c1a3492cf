-- The demo summary's spend per provider and model, with calls the catalog could not price
-- (spanline/summary.py).
SELECT provider, model_requested AS model, count() AS calls,
       sum(input_tokens) AS input_tok, sum(output_tokens) AS output_tok,
       round(sum(cost_usd), 4) AS spend_usd, countIf(NOT cost_known) AS unpriced
FROM ${database}.spans WHERE kind IN ('llm', 'embedding')
GROUP BY provider, model ORDER BY spend_usd DESC
