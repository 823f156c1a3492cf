-- Where this topic incarnation starts in a partition: the first ledger batch of this topic id
-- below the resume offset, and when it was recorded (streams/windows/changelog.py).
SELECT min(first_offset), min(created_at), count()
FROM ${database}.ingest_ledger
WHERE topic = {topic:String} AND topic_id = {topic_id:String} AND partition = {partition:Int32}
  AND first_offset < {resume:Int64}
