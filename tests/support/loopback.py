"""A loopback HTTP receiver on its own thread (an aiohttp app): stands in for webhook and
PagerDuty endpoints in tests that run the worker as a separate process."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.support.kafka_broker import free_ports

#: A route's answer to one JSON body: (status, response JSON or None for an empty body).
Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any] | None]]


def no_content(_body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    return 204, None


class LoopbackServer:
    """Records every JSON body POSTed to ``path`` (with its wall-clock arrival) and answers it."""

    def __init__(self, path: str = "/hook", answer: Answer = no_content) -> None:
        self.port = free_ports(1)[0]
        self.path = path
        self.received: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # time.monotonic() of each accepted body
        self._answer = answer
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def hook(request: web.Request) -> web.Response:
            body = await request.json()
            status, reply = self._answer(body)
            if status < 300:
                self.received.append(body)
                self.arrived.append(time.monotonic())
            return web.Response(status=status) if reply is None else web.json_response(reply, status=status)

        app = web.Application()
        app.router.add_post(self.path, hook)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self._loop)
        self._thread.join(10)
