-- Whether a re-pricing chunk's corrections are already in span_cost_deltas (and so in the
-- rollups): a rerun never inserts them twice, however long after the first insert.
SELECT count() FROM ${database}.span_cost_deltas
WHERE token = {token:String}
  AND start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
