-- Trace lookup: where each trace's spans are, so opening one trace stays fast on a large `spans`
-- table. The spans sort key starts with tenant_id, service, feature, kind and the hour, not
-- trace_id, so a query by trace id alone can only use the bloom-filter skip index over every
-- granule of every day. This table is sorted by trace_id: one primary-key lookup gives the
-- trace's tenant and its span start-time range, and the spans query then reads that tenant's
-- rows of those days and hours only (bench/trace_query.py measures both paths).
--
-- Filled by a materialized view, one row per trace and insert block (a trace whose spans come
-- in several blocks has several rows: readers take min/max). Same TTL, partitioning and insert
-- deduplication as `spans`, so a redelivered batch adds no second row here either. Spans stored
-- before this migration have no row: readers fall back to the skip-index scan for them.
CREATE TABLE IF NOT EXISTS ${database}.trace_index
(
    trace_id String CODEC(ZSTD(1)),
    tenant_id LowCardinality(String),
    start_time DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),  -- earliest span start of the block
    last_start DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),  -- latest span start of the block
    spans UInt32
)
ENGINE = MergeTree
PARTITION BY toDate(start_time)
ORDER BY (trace_id, tenant_id)
${spans_ttl}
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.trace_index_mv TO ${database}.trace_index AS
SELECT trace_id, tenant_id, first_start AS start_time, last_start, spans
FROM
(
    SELECT trace_id, tenant_id, min(start_time) AS first_start, max(start_time) AS last_start,
           toUInt32(count()) AS spans
    FROM ${database}.spans
    GROUP BY trace_id, tenant_id
);

-- Example traces of an incident: a few of the worst traces in the alert's scope and window
-- (slowest, failed or costliest, by the rule's signal), so a page links to real requests.
ALTER TABLE ${database}.alerts
    ADD COLUMN IF NOT EXISTS example_trace_ids Array(String) CODEC(ZSTD(1))
    AFTER diagnosis;
