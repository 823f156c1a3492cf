-- This incarnation's rows of the open windows, in offset order, as the live aggregation reads
-- them (${columns} = spanline/windows/aggregate.py ROW_COLUMNS; streams/windows/changelog.py).
SELECT ${columns}
FROM ${database}.spans
WHERE kafka_topic = {topic:String} AND kafka_partition = {partition:Int32}
  AND kafka_offset >= {first:Int64} AND kafka_offset < {resume:Int64}
  AND ingested_at >= {since:DateTime64(3, 'UTC')} - INTERVAL {slack:UInt32} SECOND
  AND start_time >= {open_from:DateTime64(3, 'UTC')}
ORDER BY kafka_offset
