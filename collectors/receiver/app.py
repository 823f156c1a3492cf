"""The HTTP receiver (`spanline collect`): canonical JSON/NDJSON and OTLP/HTTP into Kafka.

Status codes: 200 all accepted; 207 some items rejected (listed with reasons; the rest
accepted); 400 unparseable body; 401 no key; 403 unknown key; 413 body too large; 415 unknown
Content-Encoding; 503 Kafka did not acknowledge (retry later). ``/v1/traces`` answers the OTLP
way (collectors/receiver/otlp_response.py): 200 with ``partialSuccess`` naming the rejected
spans, and every failure as a ``google.rpc.Status``.

``/metrics`` serves Spanline's Prometheus metrics (spanline/metrics.py) without a key, like any
exporter: counts and latencies only, no tenant, key or payload.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from kafka.errors import KafkaError
from prometheus_client.aiohttp import make_aiohttp_handler

from spanline.collectors.otlp import decode_otlp
from spanline.collectors.receiver.auth import Keyring
from spanline.collectors.receiver.encoding import InflatedTooLarge, UndecodableBody, UnsupportedEncoding, inflate
from spanline.collectors.receiver.intake import Intake, IntakeResult
from spanline.collectors.receiver.otlp_response import error_text, export_response, failure_response
from spanline.collectors.receiver.runbook_pages import add_runbook_routes
from spanline.metrics import (
    RECEIVER_ITEMS,
    RECEIVER_METRICS,
    RECEIVER_REQUEST_SECONDS,
    RECEIVER_REQUESTS,
    REGISTRY,
    expose,
)

log = logging.getLogger(__name__)

TENANT = web.AppKey("tenant_keyring", Keyring)
INTAKE = web.AppKey("intake", Intake)
#: Whether Kafka is reachable (a blocking call: run in a thread).
READY: web.AppKey[Callable[[], bool]] = web.AppKey("ready_check")
MAX_BODY = web.AppKey("max_body_bytes", int)
#: A span endpoint's outcome label by the status of an error answer (spanline_receiver_requests).
ERROR_OUTCOMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    413: "too_large",
    415: "unsupported_encoding",
    503: "unavailable",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: A span endpoint: its answer and what the intake made of the items (for the metrics).
SpanHandler = Callable[[web.Request], Awaitable[tuple[web.Response, IntakeResult]]]


class BadRequest(web.HTTPBadRequest):
    def __init__(self, message: str) -> None:
        super().__init__(text=orjson.dumps({"error": message}).decode(), content_type="application/json")


def _tenant(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise web.HTTPUnauthorized(
            text='{"error": "send the tenant API key as Authorization: Bearer <key>"}',
            content_type="application/json",
            headers={"WWW-Authenticate": "Bearer"},
        )
    tenant = request.app[TENANT].tenant_for(key.strip())
    if tenant is None:
        raise web.HTTPForbidden(text='{"error": "unknown API key"}', content_type="application/json")
    return tenant


async def _body(request: web.Request) -> bytes:
    """The request body, inflated from its Content-Encoding; aiohttp enforces client_max_size.

    The runner is built with ``auto_decompress=False`` (collectors/receiver/server.py), so the
    bytes read here are as sent, and :func:`inflate` holds the inflated body to the same limit.
    """
    limit = request.app[MAX_BODY]
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    try:
        sent = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise
    except Exception as exc:  # a broken connection
        raise BadRequest(f"could not read the body: {exc}") from exc
    try:
        return inflate(sent, request.headers.get("Content-Encoding", ""), limit)
    except UndecodableBody as exc:
        raise BadRequest(str(exc)) from exc
    except UnsupportedEncoding as exc:
        raise web.HTTPUnsupportedMediaType(text=_dumps({"error": str(exc)}), content_type="application/json") from exc
    except InflatedTooLarge as exc:
        raise web.HTTPRequestEntityTooLarge(
            max_size=limit, text=_dumps({"error": str(exc)}), content_type="application/json"
        ) from exc


def _canonical_items(body: bytes, content_type: str) -> list[Any]:
    """A JSON array, one JSON object, or NDJSON (one span per line)."""
    if "ndjson" in content_type or "jsonlines" in content_type:
        items: list[Any] = []
        for number, line in enumerate(body.splitlines(), start=1):
            if line.strip():
                try:
                    items.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise BadRequest(f"line {number} is not JSON: {exc}") from exc
        return items
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc
    return decoded if isinstance(decoded, list) else [decoded]


async def _accept(request: web.Request, items: list[Any], tenant: str, source: str) -> IntakeResult:
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    try:
        return await request.app[INTAKE].accept(items, tenant, source, f"http/{request_id}")
    except KafkaError as exc:
        log.warning("Kafka did not acknowledge %d items: %s", len(items), exc)
        raise web.HTTPServiceUnavailable(
            text='{"error": "the span queue (Kafka) is unavailable; retry"}',
            content_type="application/json",
            headers={"Retry-After": "5"},
        ) from exc


def counted(endpoint: str, handler: SpanHandler) -> Handler:
    """``handler`` with its answers and items counted by outcome and timed (spanline/metrics.py)."""
    outcomes = ("accepted", "partial", *ERROR_OUTCOMES.values(), "error")
    requests = {outcome: RECEIVER_REQUESTS.labels(endpoint, outcome) for outcome in outcomes}
    accepted, rejected = RECEIVER_ITEMS.labels(endpoint, "accepted"), RECEIVER_ITEMS.labels(endpoint, "rejected")
    seconds = RECEIVER_REQUEST_SECONDS.labels(endpoint)

    async def answer(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response, result = await handler(request)
        except web.HTTPException as exc:
            requests[ERROR_OUTCOMES.get(exc.status, "error")].inc()
            raise
        except Exception:
            requests["error"].inc()
            raise
        finally:
            seconds.observe(time.perf_counter() - started)
        requests["partial" if result.invalid else "accepted"].inc()
        accepted.inc(result.accepted)
        rejected.inc(len(result.invalid))
        return response

    return answer


async def post_spans(request: web.Request) -> tuple[web.Response, IntakeResult]:
    tenant = _tenant(request)
    items = _canonical_items(await _body(request), request.content_type)
    if not items:
        raise BadRequest("no spans in the body")
    result = await _accept(request, items, tenant, "http")
    return web.json_response(result.as_dict(), status=207 if result.invalid else 200, dumps=_dumps), result


async def post_traces(request: web.Request) -> tuple[web.Response, IntakeResult]:
    tenant = _tenant(request)
    body = await _body(request)
    content_type = request.content_type
    try:
        items = decode_otlp(body, content_type)
    except ValueError as exc:
        raise BadRequest(f"not an OTLP ExportTraceServiceRequest ({content_type}): {exc}") from exc
    result = await _accept(request, items, tenant, "otlp") if items else IntakeResult(0, [])
    return export_response(result.invalid, content_type), result


def otlp_answers(handler: Handler) -> Handler:
    """``handler`` with every failure answered as OTLP/HTTP asks: a ``google.rpc.Status`` in the
    request's encoding (collectors/receiver/otlp_response.py)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return failure_response(exc.status, error_text(exc), request.content_type, exc.headers)

    return answer


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready = bool(await asyncio.to_thread(request.app[READY]))
    return web.json_response({"ready": ready}, status=200 if ready else 503)


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def make_app(keyring: Keyring, intake: Intake, max_body_bytes: int, ready_check: Callable[[], bool]) -> web.Application:
    """The receiver's aiohttp application; ``ready_check()`` says whether Kafka is reachable."""
    app = web.Application(client_max_size=max_body_bytes)
    app[TENANT] = keyring
    app[INTAKE] = intake
    app[READY] = ready_check
    app[MAX_BODY] = max_body_bytes
    app.router.add_post("/v1/spans", counted("spans", post_spans))
    app.router.add_post("/v1/traces", otlp_answers(counted("traces", post_traces)))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    expose(*RECEIVER_METRICS)
    app.router.add_get("/metrics", make_aiohttp_handler(REGISTRY))
    add_runbook_routes(app)
    return app
