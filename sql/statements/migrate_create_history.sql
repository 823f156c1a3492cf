-- The record of applied migrations; the deduplication window makes a concurrent runner's record
-- of the same migration a no-op (sql/migrate.py).
CREATE TABLE IF NOT EXISTS ${database}.schema_migrations
(name String, checksum String, applied_at DateTime64(3, 'UTC'))
ENGINE = MergeTree ORDER BY name SETTINGS non_replicated_deduplication_window = 1000
