-- The worker's write-ahead log of insert batches: a batch's (topic, topic_id, partition,
-- first_offset, last_offset) and its insert_deduplication_token are recorded before the batch is inserted.
-- After a crash or rebalance, a redelivered batch is cut at the same offsets again and so is
-- inserted with the same token, which ClickHouse deduplicates (streams/ledger.py).
-- topic_id tells incarnations of a topic apart: offsets restart at 0 when a topic is recreated.
-- Rows are only needed until their offsets are committed; the TTL keeps a week of history.
CREATE TABLE IF NOT EXISTS ${database}.ingest_ledger
(
    topic LowCardinality(String),
    topic_id LowCardinality(String),
    partition Int32,
    first_offset Int64 CODEC(Delta, ZSTD(1)),
    last_offset Int64 CODEC(Delta, ZSTD(1)),
    token String CODEC(ZSTD(1)),
    created_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
ORDER BY (topic, topic_id, partition, first_offset)
${ledger_ttl}
SETTINGS non_replicated_deduplication_window = 1000;
