-- Rows after the changelog's through offset whose minute had already closed: the late spans,
-- which the open windows count in their frontier minute (${columns} = spanline/windows/aggregate.py
-- ROW_COLUMNS; streams/windows/changelog.py).
SELECT ${columns}
FROM ${database}.spans
WHERE kafka_topic = {topic:String} AND kafka_partition = {partition:Int32}
  AND kafka_offset >= {first:Int64} AND kafka_offset < {resume:Int64}
  AND ingested_at >= {since:DateTime64(3, 'UTC')} - INTERVAL {slack:UInt32} SECOND
  AND kafka_offset > {through:Int64}
  AND start_time < {frontier:DateTime64(3, 'UTC')}
ORDER BY kafka_offset
