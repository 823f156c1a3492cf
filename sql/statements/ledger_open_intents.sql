-- The ingest ledger's batches of a partition that end at or after an offset: the cut points a
-- redelivered tail is re-formed at (streams/ledger.py).
SELECT DISTINCT first_offset, last_offset
FROM ${database}.ingest_ledger
WHERE topic = {topic:String} AND topic_id = {topic_id:String} AND partition = {partition:Int32}
  AND last_offset >= {offset:Int64}
ORDER BY first_offset
