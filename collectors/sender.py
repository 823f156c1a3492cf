"""Sending generated traffic through the real receiver (`spanline simulate`), per tenant key."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiohttp
import orjson

from spanline.errors import SpanlineError


@dataclass
class SendReport:
    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    seconds: float = 0.0

    @property
    def spans_per_s(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


async def send_chunks(
    url: str,
    keys: dict[str, str],
    chunks: Iterable[list[dict[str, object]]],
    concurrency: int = 4,
    on_progress: Callable[[SendReport], None] | None = None,
) -> SendReport:
    """POST each chunk's spans to ``<url>/v1/spans``, one request per tenant, ``concurrency`` at once."""
    report = SendReport()
    started = time.perf_counter()
    queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(maxsize=concurrency * 2)

    async def post(session: aiohttp.ClientSession) -> None:
        while (job := await queue.get()) is not None:
            tenant, body = job
            headers = {"Authorization": f"Bearer {keys[tenant]}", "Content-Type": "application/json"}
            async with session.post(f"{url}/v1/spans", data=body, headers=headers) as response:
                payload = await response.json(content_type=None)
                if response.status not in (200, 207):
                    raise SpanlineError(f"receiver answered {response.status}: {payload}")
            report.requests += 1
            report.accepted += payload["accepted"]
            report.rejected += payload["rejected"]
            if on_progress:
                on_progress(report)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        posters = [asyncio.create_task(post(session)) for _ in range(concurrency)]
        for chunk in chunks:
            by_tenant: dict[str, list[dict[str, object]]] = defaultdict(list)
            for span in chunk:
                by_tenant[str(span["tenant_id"])].append(span)
            for tenant, spans in by_tenant.items():
                if tenant not in keys:
                    raise SpanlineError(f"no API key for tenant {tenant!r}; known: {', '.join(sorted(keys))}")
                await _put(queue, (tenant, orjson.dumps(spans)), posters)
        for _ in posters:
            await _put(queue, None, posters)
        await asyncio.gather(*posters)
    report.seconds = time.perf_counter() - started
    return report


async def _put(queue: asyncio.Queue, item: object, posters: list[asyncio.Task]) -> None:
    """Queue a job, surfacing a failed poster's error instead of waiting forever."""
    while True:
        for task in posters:
            if task.done() and task.exception():
                raise task.exception()  # type: ignore[misc]
        try:
            await asyncio.wait_for(queue.put(item), timeout=1.0)
            return
        except asyncio.TimeoutError:
            continue
