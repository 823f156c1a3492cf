"""The worker's retry: the core policy (spanline/retrying.py) with the worker's settings and its
classifier (streams/faults.py). Transient failures are retried forever, with back-off from
``retry_initial_s`` to ``retry_max_s``; any other failure is raised at once."""

from __future__ import annotations

from spanline.retrying import DEFAULT_INITIAL_S, DEFAULT_MAX_S, Retry
from spanline.settings import Settings
from spanline.streams.faults import is_transient


def transient(settings: Settings | None = None) -> Retry:
    """Retries what streams/faults.py calls transient; the settings' back-off, else the defaults."""
    if settings is None:
        return Retry(is_transient, DEFAULT_INITIAL_S, DEFAULT_MAX_S)
    return Retry.from_settings(settings, is_transient)
