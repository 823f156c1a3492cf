-- A rollup's counter and map columns in [start, end), summed per grain group and bucket.
-- ${aggregates} is "sum(c) AS c" or "sumMap(c) AS c" for each column the table has, built by
-- alerts/bootstrap.py from identifiers; ${bucket} is the rollup's time column.
SELECT ${dimensions}, ${bucket}, ${aggregates}
FROM ${database}.${table}
WHERE ${bucket} >= {start:DateTime('UTC')} AND ${bucket} < {end:DateTime('UTC')}
GROUP BY ${dimensions}, ${bucket}
