-- The stream windows' changelog: one row per (partition, minute) window the worker emitted to
-- the `metrics` topic (streams/windows). A worker that (re)starts consuming a partition reads
-- the partition's latest row to know which minutes are closed (minute + 1 min is the frontier),
-- how far event time had got (high, watermark) and up to which offset every span was accounted
-- for (through_offset); it then rebuilds the still-open windows from the raw `spans` rows.
--
-- Keyed by topic id as well as name: offsets restart at 0 when a topic is recreated.
-- A row is written after Kafka acknowledged the record; a crash in between re-emits an
-- identical record, and each insert (one partition's windows closed together) carries the token
-- window:<topic>:<topic_id>:<partition>:<first minute>-<last minute>,
-- so the retried row is deduplicated like every other Spanline insert.
-- payload is the exact message value (orjson), kept for audit and replays of `metrics`.
CREATE TABLE IF NOT EXISTS ${database}.metric_windows
(
    topic LowCardinality(String),
    topic_id LowCardinality(String),
    partition Int32,
    minute DateTime('UTC') CODEC(Delta, ZSTD(1)),
    through_offset Int64,
    high DateTime64(3, 'UTC'),
    watermark DateTime64(3, 'UTC'),
    late_spans UInt64,
    spans UInt64,
    payload String CODEC(ZSTD(3)),
    emitted_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
ORDER BY (topic, topic_id, partition, minute)
TTL toDateTime(emitted_at) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;
