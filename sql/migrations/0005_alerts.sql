-- Alert history (docs/requirements.md §3, §5): one row per state change of one rule on one scope,
-- written by the worker's alert sink (spanline.alerts.history). Dashboards draw the rows as
-- annotations (firing/resolved at `at`) and list open incidents (last state per dedup_key).
--
-- `at` is event time: the end of the evaluated minute; `recorded_at` is when it was written.
-- Inserts carry insert_deduplication_token = dedup_key/state/at, so a state change written again
-- after a worker restart or a retried insert is dropped (non_replicated_deduplication_window).
-- `diagnosis` is the page's JSON object (branch and numbers), readable with JSONExtract*.
-- Kept 2 years: incident history is small and useful for postmortems and baselines.

CREATE TABLE IF NOT EXISTS ${database}.alerts
(
    at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    recorded_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    rule LowCardinality(String),
    severity LowCardinality(String),
    state LowCardinality(String),
    dedup_key String,
    tenant_id LowCardinality(String),
    scope Map(LowCardinality(String), String),
    value Float64,
    threshold Float64,
    summary String,
    runbook LowCardinality(String),
    runbook_branch LowCardinality(String),
    diagnosis String CODEC(ZSTD(3))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (rule, dedup_key, at)
TTL toDateTime(at) + INTERVAL 730 DAY
SETTINGS non_replicated_deduplication_window = 10000;
