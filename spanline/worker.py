"""The worker process: the ingest stage's Faust app with the alerting stage on its ``metrics``
output, Spanline's Prometheus metrics at ``/metrics`` on its web port and, in embedded mode,
the query service for the CLI."""

from __future__ import annotations

from typing import Any

import faust
from prometheus_client.aiohttp import make_aiohttp_handler

from spanline.alerts.worker import install_alerting
from spanline.metrics import ALERTING_METRICS, REGISTRY, WORKER_METRICS, expose
from spanline.query_service import serve_queries
from spanline.settings import Settings
from spanline.streams.app import create_ingest_app


def create_app(settings: Settings) -> faust.App:
    ingest = create_ingest_app(settings)
    install_alerting(ingest.app, settings, ingest.storage, lambda: ingest.pipeline.stats)
    serve_metrics(ingest.app)
    if settings.embedded_clickhouse:
        serve_queries(ingest.app, ingest.sink, settings, lambda: ingest.pipeline.stats)
    return ingest.app


def serve_metrics(app: faust.App) -> None:
    """``GET /metrics`` on the worker's Faust web server (SPANLINE_WORKER_WEB_PORT): the port each
    worker already has, so several workers on one host need no second port each."""
    expose(*WORKER_METRICS, *ALERTING_METRICS)
    handler = make_aiohttp_handler(REGISTRY)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return await handler(request)
