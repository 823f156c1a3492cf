-- name: cache_savings
-- question: How often does each cache layer hit, per feature, and what did the hits save?
--   A hit is priced as the call it avoided: the mean cost_usd of the feature's successful
--   (status 'ok') LLM calls in the same window and tenant scope. Features with no such call
--   show saved_usd = 0. Lookups are cache spans with a known outcome (cache_hit not NULL).
-- param: since DateTime64(3, 'UTC')
-- param: until DateTime64(3, 'UTC')
-- param: tenant String = ''
WITH
    lookups AS
    (
        SELECT feature, cache_layer, count() AS lookups, countIf(cache_hit) AS hits
        FROM ${database}.spans
        WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
          AND ({tenant:String} = '' OR tenant_id = {tenant:String})
          AND kind = 'cache' AND cache_hit IS NOT NULL
        GROUP BY feature, cache_layer
    ),
    avoided AS
    (
        SELECT feature, avg(cost_usd) AS mean_call_cost_usd
        FROM ${database}.spans
        WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
          AND ({tenant:String} = '' OR tenant_id = {tenant:String})
          AND kind = 'llm' AND status = 'ok'
        GROUP BY feature
    )
SELECT
    l.feature AS feature,
    l.cache_layer AS cache_layer,
    l.lookups AS lookups,
    l.hits AS hits,
    l.hits / l.lookups AS hit_rate,
    a.mean_call_cost_usd AS mean_call_cost_usd,
    l.hits * a.mean_call_cost_usd AS saved_usd
FROM lookups AS l
LEFT JOIN avoided AS a ON l.feature = a.feature
ORDER BY saved_usd DESC, feature, cache_layer
SETTINGS join_use_nulls = 0
