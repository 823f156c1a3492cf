"""Sending generated traffic through the real receiver (`spanline simulate`), per tenant key."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypedDict, cast

import aiohttp
import orjson

from spanline.errors import SpanlineError
from spanline.retrying import Retry

#: Answers that mean "not stored, try again later" (the receiver's 503 when Kafka is down).
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
#: First back-off between two tries of one request (the simulator has no settings: a client).
RETRY_INITIAL_S = 0.5
#: Longest wait between two tries of one request, whatever Retry-After says.
MAX_RETRY_WAIT_S = 10.0


class ReceiverAnswer(SpanlineError):
    """The receiver did not store a request: its status, its answer and its Retry-After."""

    def __init__(self, status: int, payload: object, retry_after_s: float | None) -> None:
        super().__init__(f"receiver answered {status}: {payload}")
        self.status = status
        self.retry_after_s = retry_after_s


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ReceiverAnswer) and exc.status in RETRYABLE_STATUSES


def _retry_after(exc: BaseException) -> float | None:
    wait = exc.retry_after_s if isinstance(exc, ReceiverAnswer) else None
    return min(wait, MAX_RETRY_WAIT_S) if wait is not None else None


@dataclass
class SendReport:
    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
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
    retry_for_s: float = 300.0,
) -> SendReport:
    """POST each chunk's spans to ``<url>/v1/spans``, one request per tenant, ``concurrency`` at once.

    A request the receiver could not store (429, 502–504, e.g. 503 while Kafka is down) is
    retried after its Retry-After (or the jittered back-off of spanline/retrying.py) for up to
    ``retry_for_s``, as an OTLP exporter would; any other failure stops the run with the
    receiver's answer.
    """
    report = SendReport()
    started = time.perf_counter()
    queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(maxsize=concurrency * 2)

    async def post(session: aiohttp.ClientSession) -> None:
        while (job := await queue.get()) is not None:
            tenant, body = job
            headers = {"Authorization": f"Bearer {keys[tenant]}", "Content-Type": "application/json"}
            payload = await _post_until_stored(session, f"{url}/v1/spans", body, headers, report, retry_for_s)
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


class Counts(TypedDict):
    """The receiver's answer to a stored request."""

    accepted: int
    rejected: int


async def _post_until_stored(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    report: SendReport,
    retry_for_s: float,
) -> Counts:
    deadline = time.monotonic() + retry_for_s
    retry = Retry(
        _retryable,
        RETRY_INITIAL_S,
        MAX_RETRY_WAIT_S,
        retry_after=_retry_after,
        give_up=lambda: time.monotonic() >= deadline,
    )
    tries = 0

    async def post() -> Counts:
        nonlocal tries
        if tries:
            report.retries += 1
        tries += 1
        try:
            async with session.post(url, data=body, headers=headers) as response:
                payload = await response.json(content_type=None)
                status, retry_after = response.status, response.headers.get("Retry-After")
        except aiohttp.ClientConnectionError as exc:  # receiver restarting: as retryable as a 503
            payload, status, retry_after = {"error": str(exc)}, 503, None
        if status in (200, 207):
            return cast(Counts, payload)
        raise ReceiverAnswer(status, payload, float(retry_after) if retry_after and retry_after.isdigit() else None)

    return await retry.run(post, f"receiver {url}")


async def _put(
    queue: asyncio.Queue[tuple[str, bytes] | None], item: tuple[str, bytes] | None, posters: list[asyncio.Task[None]]
) -> None:
    """Queue a job, surfacing a failed poster's error instead of waiting forever."""
    while True:
        for task in posters:
            if task.done() and task.exception():
                raise task.exception()  # type: ignore[misc]
        try:
            await asyncio.wait_for(queue.put(item), timeout=1.0)
            return
        except TimeoutError:
            continue
