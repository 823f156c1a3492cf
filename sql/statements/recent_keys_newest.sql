-- The newest message time among a partition's rows below the resume offset, where the re-send
-- window of the reloaded keys ends (streams/recent_keys.py).
SELECT toUnixTimestamp64Milli(max(kafka_timestamp)), count()
FROM ${database}.spans
WHERE kafka_topic = {topic:String} AND kafka_partition = {partition:Int32}
  AND kafka_offset < {resume:Int64}
