-- The newest event time among this incarnation's rows after the changelog's through offset,
-- which the rebuilt high takes into account (streams/windows/changelog.py).
SELECT max(start_time), count()
FROM ${database}.spans
WHERE kafka_topic = {topic:String} AND kafka_partition = {partition:Int32}
  AND kafka_offset >= {first:Int64} AND kafka_offset < {resume:Int64}
  AND ingested_at >= {since:DateTime64(3, 'UTC')} - INTERVAL {slack:UInt32} SECOND
  AND kafka_offset > {through:Int64}
