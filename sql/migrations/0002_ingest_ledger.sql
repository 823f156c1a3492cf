-- The worker's write-ahead log of insert batches: (topic, partition, first, last offset) is
-- recorded before a batch's insert, so after a crash or rebalance a redelivered batch is cut at
-- the same offsets and its insert_deduplication_token matches (streams/batcher.py).
CREATE TABLE IF NOT EXISTS ${database}.ingest_ledger
(
    topic LowCardinality(String),
    partition Int32,
    first_offset Int64,
    last_offset Int64,
    token String,
    created_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (topic, partition, first_offset)
TTL toDateTime(created_at) + INTERVAL 7 DAY
SETTINGS non_replicated_deduplication_window = 1000;
