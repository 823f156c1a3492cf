-- The Kafka message timestamp of each span's message. Span-level idempotency measures re-sends
-- in message time (streams/resends.py): after a restart the worker reloads the keys a partition
-- stored recently by this column, so a replayed batch is filtered exactly as the first time.
ALTER TABLE ${database}.spans
    ADD COLUMN IF NOT EXISTS kafka_timestamp DateTime64(3, 'UTC') DEFAULT ingested_at CODEC(Delta, ZSTD(1))
    AFTER kafka_offset;
