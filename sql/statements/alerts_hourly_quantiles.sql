-- A percentile metric's hourly quantile per family group from the spans_hour sketches, with the
-- span count as its weight. The sketch parameters are those of sql/migrations/0003_rollups.sql
-- (accuracy, then the levels alerts/bootstrap.py SKETCH_LEVELS indexes with ${level});
-- ${divisor} turns a µs sketch back to ms.
SELECT ${group}, toFloat64(sum(spans)) AS den,
       quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(${column})[${level}] / ${divisor} AS value
FROM ${database}.spans_hour
WHERE hour >= {start:DateTime('UTC')} AND hour < {end:DateTime('UTC')}
  AND kind IN {kinds:Array(String)}
GROUP BY ${group}
