"""Wiring the receiver from settings: keys, salt, Kafka publisher, HTTP server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from aiohttp import web

from spanline.api_keys import api_keys_path, read_keys_file
from spanline.collectors.receiver.app import make_app
from spanline.collectors.receiver.auth import Keyring
from spanline.collectors.receiver.intake import Intake
from spanline.contract.hashing import stored_master_secret
from spanline.errors import ConfigError
from spanline.kafka.admin import metadata_answers
from spanline.kafka.publish import SpanPublisher
from spanline.settings import Settings

log = logging.getLogger(__name__)


def load_keyring(settings: Settings) -> Keyring:
    """Keys from SPANLINE_API_KEYS plus the keys file; at least one key is required."""
    keys = dict(settings.api_keys)
    path = api_keys_path(settings)
    if path.exists():
        keys.update(read_keys_file(path))
    elif settings.api_keys_file is not None:
        raise ConfigError(f"SPANLINE_API_KEYS_FILE {path} does not exist")
    if not keys:
        raise ConfigError(
            f'no API keys: set SPANLINE_API_KEYS=\'{{"tenant": "key"}}\' or write {path} '
            "(`spanline up` creates demo keys there)"
        )
    return Keyring(keys)


class ProducerOverrides(TypedDict):
    """kafka-python producer settings the receiver changes (milliseconds)."""

    request_timeout_ms: int
    delivery_timeout_ms: int
    max_block_ms: int


#: A request waits at most ~15 s for Kafka, then gets 503 + Retry-After. Its messages expire
#: in the producer at that same deadline instead of being delivered later, so the client's
#: retry of a 503 does not store the spans twice (the default would hold requests for 2 min).
RECEIVER_PRODUCER_OVERRIDES: ProducerOverrides = {
    "request_timeout_ms": 10_000,
    "delivery_timeout_ms": 15_000,
    "max_block_ms": 5_000,
}


@asynccontextmanager
async def running_receiver(settings: Settings) -> AsyncIterator[web.AppRunner]:
    """Serve the receiver until the context exits; the publisher is flushed on the way out."""
    keyring = load_keyring(settings)
    publisher = await asyncio.to_thread(
        SpanPublisher,
        settings.bootstrap_servers,
        settings.topic_spans,
        settings.spans_per_message,
        **RECEIVER_PRODUCER_OVERRIDES,
    )
    salt = stored_master_secret(settings, create=True)
    assert salt is not None  # create=True always yields a secret
    intake = Intake(publisher, settings.topic_dlq, salt)
    app = make_app(
        keyring,
        intake,
        settings.max_body_bytes,
        ready_check=lambda: metadata_answers(settings.bootstrap_servers, timeout_s=2.0),
    )
    runner = web.AppRunner(app, access_log=None, auto_decompress=False)  # app.py inflates bodies itself
    await runner.setup()
    site = web.TCPSite(runner, settings.collector_host, settings.collector_port)
    await site.start()
    log.info(
        "receiver listening on http://%s:%d (%d tenant keys)",
        settings.collector_host,
        settings.collector_port,
        len(keyring),
    )
    try:
        yield runner
    finally:
        await runner.cleanup()
        await asyncio.to_thread(publisher.close)
