"""Long-running processes: the worker, the receiver, and the embedded all-in-one `up`.

`up` with no configuration: a tansu broker child process, topics, demo API keys, then one
Faust worker process that also serves the receiver, so chDB has exactly one owner. Stopping it
drains first (spanline/drain.py): the receiver closes, the worker stores what it accepted, and
only then do the worker and the broker stop.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import ExitStack
from typing import Any

import faust

from spanline.api_keys import api_keys_path, create_dev_keys
from spanline.collectors.receiver.server import running_receiver
from spanline.drain import Drain, DrainingWorker
from spanline.kafka.admin import ensure_topics
from spanline.kafka.tansu import TansuBroker
from spanline.settings import Settings
from spanline.worker import create_app

log = logging.getLogger(__name__)

DEMO_TENANTS = ("acme", "globex", "initech", "umbrella")


def topics(settings: Settings) -> dict[str, int]:
    names = (settings.topic_spans, settings.topic_dlq, settings.topic_alerts)
    return {
        **{name: settings.topic_partitions for name in names},
        settings.topic_metrics: 1,
    }  # one ordered stream of windows


class ServedReceiver:
    """The receiver as a task of the worker, served until the drain closes it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._close = asyncio.Event()
        self._closed = asyncio.Event()
        self._serving = False

    async def serve(self) -> None:
        self._serving = True
        try:
            async with running_receiver(self._settings):
                await self._close.wait()
        finally:
            self._closed.set()

    async def close(self) -> None:
        """Close the listener; returns once in-flight requests are answered and the publisher is flushed."""
        self._close.set()
        if self._serving:
            await self._closed.wait()


def run_worker(settings: Settings, with_receiver: bool = False) -> None:
    """Run the Faust worker until SIGINT/SIGTERM; optionally serve the receiver in it too.

    With the receiver, a stop signal drains first: the worker stores every span it accepted.
    """
    ensure_topics(settings.bootstrap_servers, topics(settings), settings.topic_replication)
    app = create_app(settings)
    drain: Drain | None = None
    if with_receiver:
        receiver = ServedReceiver(settings)
        app.task(receiver.serve)
        if settings.drain_timeout_s > 0:
            fate = (
                "lost: the embedded broker keeps them in memory only"
                if settings.embedded_kafka
                else "kept in Kafka: a worker of the group stores them when it runs again"
            )
            drain = Drain(
                receiver.close,
                settings.bootstrap_servers,
                settings.topic_spans,
                app.conf.id,
                settings.drain_timeout_s,
                fate,
            )
    options: dict[str, Any] = {"loglevel": settings.log_level, "quiet": True}
    worker = faust.Worker(app, **options) if drain is None else DrainingWorker(app, drain, **options)
    worker.execute_from_commandline()


def run_receiver(settings: Settings) -> None:
    ensure_topics(settings.bootstrap_servers, topics(settings), settings.topic_replication)

    async def serve() -> None:
        async with running_receiver(settings):
            await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        log.info("receiver stopped")


def run_up(settings: Settings) -> None:
    """Everything on the embedded default: broker, topics, keys, worker + receiver."""
    with ExitStack() as stack:
        if settings.embedded_kafka:
            broker = stack.enter_context(
                TansuBroker(settings.embedded_kafka_port, log_path=settings.home / "tansu.log")
            )
            log.info("embedded Kafka (tansu) on %s", broker.bootstrap_servers)
        keys_file = api_keys_path(settings)
        if not keys_file.exists() and not settings.api_keys:
            create_dev_keys(keys_file, DEMO_TENANTS)
            log.info("created demo API keys for %s in %s", ", ".join(DEMO_TENANTS), keys_file)
        run_worker(settings, with_receiver=True)
