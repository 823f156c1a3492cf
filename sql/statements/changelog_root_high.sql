-- The newest start of a trace root (no parent) among this incarnation's rows from the open
-- windows on: the rebuilt root high, which closes windows early (streams/windows/state.py).
SELECT max(start_time), count()
FROM ${database}.spans
WHERE kafka_topic = {topic:String} AND kafka_partition = {partition:Int32}
  AND kafka_offset >= {first:Int64} AND kafka_offset < {resume:Int64}
  AND ingested_at >= {since:DateTime64(3, 'UTC')} - INTERVAL {slack:UInt32} SECOND
  AND parent_span_id = ''
  AND start_time >= {open_from:DateTime64(3, 'UTC')}
