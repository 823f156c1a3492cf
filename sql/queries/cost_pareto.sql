-- name: cost_pareto
-- question: What share of spend do the most expensive top_share of model calls make, and which
--   features and prompt versions are they? Calls are ranked by cost_usd (ties by span_id); the
--   top ceil(top_share * calls) are kept and grouped. top_calls_share_of_spend is the same on
--   every row: the top calls' cost over all calls' cost.
-- param: since DateTime64(3, 'UTC')
-- param: until DateTime64(3, 'UTC')
-- param: tenant String = ''
-- param: top_share Float64 = 0.1
WITH ranked AS
(
    SELECT
        feature,
        prompt_id,
        prompt_version,
        cost_usd,
        row_number() OVER (ORDER BY cost_usd DESC, span_id) AS cost_rank,
        count() OVER () AS all_calls,
        sum(cost_usd) OVER () AS all_cost_usd
    FROM ${database}.spans
    WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
      AND ({tenant:String} = '' OR tenant_id = {tenant:String})
      AND model_requested != ''
)
SELECT
    feature,
    prompt_id,
    prompt_version,
    count() AS calls,
    sum(cost_usd) AS spend_usd,
    sum(cost_usd) / any(all_cost_usd) AS share_of_spend,
    sum(sum(cost_usd)) OVER () / any(all_cost_usd) AS top_calls_share_of_spend,
    sum(count()) OVER () AS top_calls,
    any(all_calls) AS calls_in_window
FROM ranked
WHERE cost_rank <= ceil({top_share:Float64} * all_calls)
GROUP BY feature, prompt_id, prompt_version
ORDER BY spend_usd DESC, feature, prompt_id, prompt_version
