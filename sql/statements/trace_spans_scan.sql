-- One trace's spans without a lookup row (spans stored before sql/migrations/0007): only the
-- trace_id bloom-filter skip index prunes, over every granule. Same columns as trace_spans.
SELECT ${columns}
FROM ${database}.spans
WHERE trace_id = {trace_id:String}
ORDER BY start_time, span_id
