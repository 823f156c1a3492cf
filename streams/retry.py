"""The worker's retry: the core policy (spanline/retrying.py) with the worker's settings and its
classifier (streams/faults.py). Transient failures are retried forever, with back-off from
``retry_initial_s`` to ``retry_max_s``; any other failure is raised at once. Each retry is
counted in ``spanline_worker_retries_total{kind="transient"}``."""

from __future__ import annotations

from spanline.metrics import WORKER_RETRIES
from spanline.retrying import DEFAULT_INITIAL_S, DEFAULT_MAX_S, Retry
from spanline.settings import Settings
from spanline.streams.faults import is_transient


def transient(settings: Settings | None = None) -> Retry:
    """Retries what streams/faults.py calls transient; the settings' back-off, else the defaults."""
    counted = WORKER_RETRIES.labels("transient").inc
    if settings is None:
        return Retry(is_transient, DEFAULT_INITIAL_S, DEFAULT_MAX_S, on_retry=counted)
    return Retry.from_settings(settings, is_transient, on_retry=counted)
