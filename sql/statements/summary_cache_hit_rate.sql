-- The demo summary's cache hit rate per cache layer (spanline/summary.py).
SELECT cache_layer AS layer, count() AS lookups, countIf(cache_hit) AS hits,
       round(countIf(cache_hit) / count() * 100, 1) AS hit_rate_pct
FROM ${database}.spans WHERE kind = 'cache' GROUP BY layer ORDER BY layer
