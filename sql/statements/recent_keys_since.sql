-- The span keys a partition stored below the resume offset within the re-send window, with
-- their message times, in offset order (streams/recent_keys.py).
SELECT tenant_id, trace_id, span_id, toUnixTimestamp64Milli(kafka_timestamp)
FROM ${database}.spans
WHERE kafka_topic = {topic:String} AND kafka_partition = {partition:Int32}
  AND kafka_offset < {resume:Int64}
  AND kafka_timestamp >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')
ORDER BY kafka_offset
