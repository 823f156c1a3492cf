"""The worker's consumer fetch wait is the setting, not Faust's fixed 1500 ms (freshness on tansu)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from spanline.kafka.admin import ensure_topics
from spanline.settings import load_settings
from spanline.worker import create_app

pytestmark = pytest.mark.e2e


def test_the_worker_consumer_waits_at_most_the_configured_fetch_wait(tansu_kafka: Any, tmp_path: Path) -> None:
    settings = load_settings(
        {
            "SPANLINE_HOME": str(tmp_path),
            "SPANLINE_KAFKA_BOOTSTRAP_SERVERS": tansu_kafka.bootstrap_servers,
            "SPANLINE_TOPIC_SPANS": "fetch-wait-spans",
            "SPANLINE_FETCH_MAX_WAIT_MS": "123",
        }
    )
    ensure_topics(settings.bootstrap_servers, {settings.topic_spans: 1})
    app = create_app(settings)

    async def created_consumer_wait() -> int:
        consumer = app.consumer._thread._create_consumer(asyncio.get_running_loop())
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    assert asyncio.run(created_consumer_wait()) == 123
    assert load_settings({"SPANLINE_HOME": str(tmp_path)}).fetch_max_wait_ms == 100  # the default (README)
