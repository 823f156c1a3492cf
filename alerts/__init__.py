"""Alerting (docs/requirements.md §5): rules as data, baselines, evaluation per closed minute, diagnosis,
notifiers with grouping and retries, and the ClickHouse history of every state change."""
