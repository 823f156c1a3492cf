"""The HTTP receiver over real HTTP on loopback, publishing to the tansu broker."""

from __future__ import annotations

import asyncio
import base64
import gzip
import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from spanline.contract.hashing import hash_user_id, tenant_salt
from tests.support.metrics import scrape
from tests.support.receiver import Receiver, receiver_on
from tests.support.stack import read_topic

pytestmark = pytest.mark.e2e

KEY = "key-acme-for-receiver-tests"


@pytest.fixture(scope="module")
def receiver(tansu_kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    with receiver_on(
        tansu_kafka.bootstrap_servers, tmp_path_factory.mktemp("receiver"), "rx-spans", KEY, "test-master-salt", 65536
    ) as server:
        yield server


def auth(content_type: str = "application/json", **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}", "Content-Type": content_type, **extra}


def span(i: int, **fields: Any) -> dict[str, Any]:
    return {
        "span_id": f"rx-{i}",
        "trace_id": f"rx-t{i}",
        "service": "rx",
        "kind": "llm",
        "start_time": "2026-11-22T10:00:00Z",
        "duration_ms": 10,
        **fields,
    }


def test_accepted_spans_are_in_kafka_with_hashed_user_ids_before_the_answer(receiver: Receiver) -> None:
    status, body = receiver.post(
        "/v1/spans", orjson.dumps([span(i, user_id="alice@example.com") for i in range(3)]), auth()
    )
    assert status == 200 and orjson.loads(body)["accepted"] == 3
    spans = [s for batch in read_topic(receiver.settings.bootstrap_servers, "rx-spans") for s in batch]
    mine = [s for s in spans if s["span_id"] in {"rx-0", "rx-1", "rx-2"}]
    assert len(mine) == 3
    expected_hash = hash_user_id(tenant_salt(b"test-master-salt", "acme"), "alice@example.com")
    assert all(s["user_id_hash"] == expected_hash and "user_id" not in s for s in mine)
    assert "alice" not in orjson.dumps(spans).decode()


def test_gzip_ndjson_and_single_object_bodies(receiver: Receiver) -> None:
    ndjson = b"\n".join(orjson.dumps(span(i)) for i in range(10, 14))
    status, body = receiver.post(
        "/v1/spans", gzip.compress(ndjson), auth("application/x-ndjson", **{"Content-Encoding": "gzip"})
    )
    assert (status, orjson.loads(body)["accepted"]) == (200, 4)
    assert receiver.post("/v1/spans", orjson.dumps(span(20)), auth())[0] == 200


def test_bad_bodies_get_clear_errors(receiver: Receiver) -> None:
    status, body = receiver.post("/v1/spans", b"{not json", auth())
    assert status == 400 and b"not JSON" in body
    assert receiver.post("/v1/spans", b"[]", auth())[0] == 400
    assert receiver.post("/v1/spans", b"x" * 70_000, auth())[0] == 413
    assert receiver.post("/v1/spans", b"\x1f\x8bnot-gzip", auth(**{"Content-Encoding": "gzip"}))[0] == 400
    assert receiver.post("/v1/traces", b"\xff\xfe garbage", auth("application/x-protobuf"))[0] == 400
    assert receiver.post("/v1/spans", b"[]", {"Content-Type": "application/json"})[0] == 401


def otlp_span(span_id: str, *, ends_before_start: bool = False) -> dict[str, Any]:
    return {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": span_id,
        "name": "chat",
        "startTimeUnixNano": "1763805600000000000",
        "endTimeUnixNano": "1763805500000000000" if ends_before_start else "1763805600500000000",
        "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
        ],
    }


def otlp_request(spans: list[dict[str, Any]], encoding: str) -> bytes:
    """An OTLP/JSON export, or the same export in binary protobuf."""
    request = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "rx"}}]},
                "scopeSpans": [{"spans": [dict(span) for span in spans]}],
            }
        ]
    }
    if encoding == "application/json":
        return orjson.dumps(request)
    for span in request["resourceSpans"][0]["scopeSpans"][0]["spans"]:  # protobuf's JSON mapping: bytes as base64
        span["traceId"], span["spanId"] = (
            base64.b64encode(bytes.fromhex(span[k])).decode() for k in ("traceId", "spanId")
        )
    return json_format.ParseDict(request, ExportTraceServiceRequest()).SerializeToString()


def partial_success(body: bytes, encoding: str) -> tuple[int, str]:
    if encoding == "application/json":
        partial = orjson.loads(body).get("partialSuccess", {})  # unset on full success
        return int(partial.get("rejectedSpans", 0)), partial.get("errorMessage", "")
    answer = ExportTraceServiceResponse.FromString(body)
    return answer.partial_success.rejected_spans, answer.partial_success.error_message


@pytest.mark.parametrize("encoding", ["application/json", "application/x-protobuf"])
def test_otlp_partial_success_names_each_rejected_span_by_id(receiver: Receiver, encoding: str) -> None:
    spans = [
        otlp_span("b7ad6b7169203331"),
        otlp_span("c7ad6b7169203331", ends_before_start=True),
        otlp_span("d7ad6b7169203331"),
        {
            **otlp_span("e7ad6b7169203331"),
            "attributes": [{"key": "spanline.input_tokens", "value": {"intValue": "-5"}}],
        },
    ]
    status, body = receiver.post("/v1/traces", otlp_request(spans, encoding), auth(encoding))
    assert status == 200
    rejected, message = partial_success(body, encoding)
    assert rejected == 2
    assert message.startswith(
        "span c7ad6b7169203331: Value error, end_time is before start_time; span e7ad6b7169203331: "
    )
    assert "input_tokens" in message.split("; span e7ad6b7169203331: ")[1]
    assert "b7ad6b7169203331" not in message and "d7ad6b7169203331" not in message
    status, body = receiver.post("/v1/traces", otlp_request(spans[:1], encoding), auth(encoding))
    assert status == 200 and partial_success(body, encoding) == (0, "")


@pytest.mark.parametrize("encoding", ["application/json", "application/x-protobuf"])
def test_otlp_partial_success_of_a_large_export_names_twenty_and_counts_the_rest(
    receiver: Receiver, encoding: str
) -> None:
    spans = [otlp_span(f"{i:016x}", ends_before_start=i % 2 == 1) for i in range(1, 101)]
    status, body = receiver.post("/v1/traces", otlp_request(spans, encoding), auth(encoding))
    rejected, message = partial_success(body, encoding)
    assert (status, rejected) == (200, 50)
    named = re.findall(r"span ([0-9a-f]{16}): Value error, end_time is before start_time", message)
    assert named == [f"{i:016x}" for i in range(1, 40, 2)]
    assert message.endswith("; and 30 more rejected spans (each is in the dead-letter topic)")


def status_message(body: bytes, encoding: str) -> str:
    """The message of an OTLP failure: a google.rpc.Status in the request's encoding."""
    if encoding == "application/json":
        return str(orjson.loads(body)["message"])
    return Status.FromString(body).message


@pytest.mark.parametrize("encoding", ["application/json", "application/x-protobuf"])
def test_a_corrupt_gzip_export_gets_400_saying_gzip_and_the_connection_keeps_serving(
    receiver: Receiver, encoding: str
) -> None:
    good = gzip.compress(otlp_request([otlp_span("f7ad6b7169203331")], encoding))
    gzipped = auth(encoding, **{"Content-Encoding": "gzip"})

    async def exchange() -> list[tuple[int, str, bytes]]:
        answers = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            for body in (b"\x1f\x8bnot-gzip", good[:-6], good):  # corrupt, cut short, whole
                async with session.post(f"{receiver.url}/v1/traces", data=body, headers=gzipped) as response:
                    answers.append((response.status, response.content_type, await response.read()))
        return answers

    (corrupt, corrupt_type, corrupt_body), (cut, _, cut_body), (whole, _, whole_body) = asyncio.run(exchange())
    assert (corrupt, corrupt_type) == (400, encoding)
    assert status_message(corrupt_body, encoding).startswith(
        "the gzip body could not be decompressed: Error -3 while decompressing data"
    )
    assert cut == 400
    assert (
        status_message(cut_body, encoding)
        == "the gzip body could not be decompressed: the compressed stream is cut short"
    )
    assert whole == 200, whole_body
    assert partial_success(whole_body, encoding) == (0, "")


def test_a_corrupt_gzip_canonical_body_gets_400_saying_gzip(receiver: Receiver) -> None:
    status, body = receiver.post("/v1/spans", b"\x1f\x8bnot-gzip", auth(**{"Content-Encoding": "gzip"}))
    assert status == 400
    assert orjson.loads(body)["error"].startswith("the gzip body could not be decompressed: Error -3")


def test_otlp_failures_are_a_status_in_the_request_encoding(receiver: Receiver) -> None:
    status, body = receiver.post("/v1/traces", b"\xff\xfe garbage", auth("application/x-protobuf"))
    assert status == 400 and "not an OTLP ExportTraceServiceRequest" in Status.FromString(body).message
    status, body = receiver.post("/v1/traces", b"{}", {"Content-Type": "application/json"})
    assert (status, orjson.loads(body)) == (
        401,
        {"code": 16, "message": "send the tenant API key as Authorization: Bearer <key>"},
    )
    status, body = receiver.post("/v1/traces", b"", auth("application/x-protobuf", **{"Content-Encoding": "br"}))
    assert status == 415 and "'br' is not supported" in Status.FromString(body).message


def test_health_and_readiness(receiver: Receiver) -> None:
    async def get(path: str) -> int:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{receiver.url}{path}") as response:
                return response.status

    assert asyncio.run(get("/healthz")) == 200
    assert asyncio.run(get("/readyz")) == 200


def test_metrics_count_requests_and_items_by_outcome(receiver: Receiver) -> None:
    before = scrape(receiver.url)
    assert receiver.post("/v1/spans", orjson.dumps([span(i) for i in range(30, 35)]), auth())[0] == 200
    mixed = [span(40), span(41, duration_ms=-5), "not an object"]
    assert receiver.post("/v1/spans", orjson.dumps(mixed), auth())[0] == 207
    assert receiver.post("/v1/spans", b"{not json", auth())[0] == 400
    assert receiver.post("/v1/spans", b"[]", {"Content-Type": "application/json"})[0] == 401
    assert receiver.post("/v1/spans", b"[]", {"Authorization": "Bearer nobody's key"})[0] == 403
    assert receiver.post("/v1/spans", b"x" * 70_000, auth())[0] == 413
    assert receiver.post("/v1/traces", b"\xff\xfe garbage", auth("application/x-protobuf"))[0] == 400
    after = scrape(receiver.url)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    requests = {
        (endpoint, outcome): moved("spanline_receiver_requests_total", endpoint=endpoint, outcome=outcome)
        for endpoint in ("spans", "traces")
        for outcome in (
            "accepted",
            "partial",
            "bad_request",
            "unauthorized",
            "forbidden",
            "too_large",
            "unavailable",
            "error",
        )
    }
    assert {key: n for key, n in requests.items() if n} == {
        ("spans", "accepted"): 1,
        ("spans", "partial"): 1,
        ("spans", "bad_request"): 1,
        ("spans", "unauthorized"): 1,
        ("spans", "forbidden"): 1,
        ("spans", "too_large"): 1,
        ("traces", "bad_request"): 1,
    }
    assert moved("spanline_receiver_items_total", endpoint="spans", outcome="accepted") == 6
    assert moved("spanline_receiver_items_total", endpoint="spans", outcome="rejected") == 2
    assert moved("spanline_receiver_items_total", endpoint="traces", outcome="accepted") == 0
    assert moved("spanline_receiver_request_duration_seconds_count", endpoint="spans") == 6
    assert after.value("process_cpu_seconds_total") > 0  # the process collector is registered too
    assert not any("tenant" in dict(labels) or "acme" in dict(labels).values() for _, labels in after.values)
