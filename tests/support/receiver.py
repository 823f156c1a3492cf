"""The HTTP receiver on its own event-loop thread, on a loopback port, for a test module."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import orjson

from spanline.collectors.receiver.server import running_receiver
from spanline.kafka.admin import ensure_topics
from spanline.settings import Settings, load_settings
from tests.support.stack import free_port


class Receiver:
    """Runs the receiver on its own event loop thread for the whole module."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.collector_port}"
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(30), "receiver did not start"

    async def _serve(self) -> None:
        async with running_receiver(self.settings):
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        async def go() -> tuple[int, bytes]:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{self.url}{path}", data=body, headers=headers) as response:
                    return response.status, await response.read()

        return asyncio.run(go())


@contextmanager
def receiver_on(
    bootstrap_servers: str, home: Path, topic: str, api_key: str, salt: str, max_body_bytes: int
) -> Iterator[Receiver]:
    """A receiver publishing to ``topic`` (and its ``.dlq``, both created) for tenant acme's key."""
    settings = load_settings(
        {
            "SPANLINE_HOME": str(home),
            "SPANLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
            "SPANLINE_COLLECTOR_PORT": str(free_port()),
            "SPANLINE_TOPIC_SPANS": topic,
            "SPANLINE_TOPIC_DLQ": f"{topic}.dlq",
            "SPANLINE_API_KEYS": orjson.dumps({"acme": api_key}).decode(),
            "SPANLINE_USER_ID_SALT": salt,
            "SPANLINE_MAX_BODY_BYTES": str(max_body_bytes),
        }
    )
    ensure_topics(bootstrap_servers, {topic: 2, f"{topic}.dlq": 1})
    server = Receiver(settings)
    try:
        yield server
    finally:
        server.close()
