"""The worker process: the ingest stage's Faust app with the alerting stage on its ``metrics``
output and, in embedded mode, the query service for the CLI."""

from __future__ import annotations

import faust

from spanline.alerts.worker import install_alerting
from spanline.query_service import serve_queries
from spanline.settings import Settings
from spanline.streams.app import create_ingest_app


def create_app(settings: Settings) -> faust.App:
    ingest = create_ingest_app(settings)
    install_alerting(ingest.app, settings, ingest.storage, lambda: ingest.pipeline.stats)
    if settings.embedded_clickhouse:
        serve_queries(ingest.app, ingest.sink, settings, lambda: ingest.pipeline.stats)
    return ingest.app
