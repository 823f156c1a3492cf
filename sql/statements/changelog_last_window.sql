-- A partition's newest metric_windows row of this topic id: the frontier, the event-time high
-- and the last offset its windows covered (streams/windows/changelog.py).
SELECT toUnixTimestamp(minute), through_offset, toUnixTimestamp64Milli(high)
FROM ${database}.metric_windows
WHERE topic = {topic:String} AND topic_id = {topic_id:String} AND partition = {partition:Int32}
ORDER BY minute DESC
LIMIT 1
