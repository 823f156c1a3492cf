"""The HTTP receiver over real HTTP on loopback, publishing to the tansu broker."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

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


def test_otlp_json_partial_success_names_rejected_spans(receiver: Receiver) -> None:
    good = {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "b7ad6b7169203331",
        "name": "chat",
        "startTimeUnixNano": "1763805600000000000",
        "endTimeUnixNano": "1763805600500000000",
        "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
        ],
    }
    bad = {**good, "spanId": "c7ad6b7169203331", "endTimeUnixNano": "1763805500000000000"}
    request = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "rx"}}]},
                "scopeSpans": [{"spans": [good, bad]}],
            }
        ]
    }
    status, body = receiver.post("/v1/traces", orjson.dumps(request), auth())
    assert status == 200
    partial = orjson.loads(body)["partialSuccess"]
    assert partial["rejectedSpans"] == 1 and "end_time is before start_time" in partial["errorMessage"]


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
