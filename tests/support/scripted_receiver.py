"""A scripted stand-in for the receiver's ``POST /v1/spans`` on loopback (real HTTP), for the SDK's tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from tests.support.kafka_broker import free_ports

#: The scripted receiver's answer to one request: (status, JSON reply or None, headers).
Answer = Callable[[list[dict[str, Any]]], tuple[int, Any, dict[str, str]]]


def accept_all(spans: list[dict[str, Any]]) -> tuple[int, Any, dict[str, str]]:
    return 200, {"accepted": len(spans), "rejected": 0, "errors": []}, {}


class ScriptedReceiver:
    """An aiohttp server on loopback that answers POST /v1/spans as ``answer`` says and records
    every request (headers, decoded body, arrival, status); its keep-alive timeout is a knob."""

    def __init__(self, answer: Answer = accept_all, keepalive_timeout_s: float = 75.0) -> None:
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.answer = answer
        #: (headers, decoded body, arrival on time.monotonic(), status answered) of each request
        self.requests: list[tuple[dict[str, str], list[dict[str, Any]], float, int]] = []
        self._keepalive_timeout_s = keepalive_timeout_s
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Spans of the requests answered 200."""
        return [span for _, body, _, status in self.requests for span in body if status == 200]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def spans(request: web.Request) -> web.Response:
            body = orjson.loads(await request.read())  # aiohttp inflates the gzip body
            status, reply, headers = self.answer(body)
            self.requests.append((dict(request.headers), body, time.monotonic(), status))
            return web.json_response(reply, status=status, headers=headers)

        app = web.Application()
        app.router.add_post("/v1/spans", spans)
        self._runner = web.AppRunner(app, keepalive_timeout=self._keepalive_timeout_s)
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
