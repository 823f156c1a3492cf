-- Index builds (issue 15): spans of kind 'index_build' report the index's size after a build or
-- refresh, so a build that silently drops part of the corpus pages (rule index_shrink). NULL on
-- every other span. The rollups select their columns by name and do not need them: the alert
-- windows carry per-index sums (spanline/windows/aggregate.py), dashboards read the few
-- index_build spans raw.
ALTER TABLE ${database}.spans
    ADD COLUMN IF NOT EXISTS index_documents Nullable(UInt64) AFTER index_embedding_model,
    ADD COLUMN IF NOT EXISTS index_chunks Nullable(UInt64) AFTER index_documents;
