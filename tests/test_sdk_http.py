"""The SDK's default export: HTTP to the receiver with the tenant's API key.

The first tests run the SDK against a scripted receiver on loopback (real HTTP: gzip, keep-alive,
status codes and Retry-After as the receiver sends them); the last ones against the real
receiver publishing to a tansu broker, reading Kafka and the dead-letter topic back.
"""

from __future__ import annotations

import logging
import math
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest

import spanline_sdk as sdk
from spanline.contract.hashing import hash_user_id, tenant_salt
from spanline.contract.schema import Span
from tests.support.receiver import Receiver, receiver_on
from tests.support.scripted_receiver import ScriptedReceiver, accept_all
from tests.support.stack import read_topic

KEY = "sl-acme-http-export-key"


@pytest.fixture
def scripted() -> Iterator[ScriptedReceiver]:
    server = ScriptedReceiver()
    yield server
    sdk.shutdown(timeout_s=5)
    server.close()


def export_to(server: ScriptedReceiver, **knobs: Any) -> sdk.Tracer:
    return sdk.configure("http-export", endpoint=server.url, api_key=KEY, **({"flush_interval_s": 0.01} | knobs))


def test_batches_are_gzipped_canonical_json_with_the_api_key(scripted: ScriptedReceiver) -> None:
    tracer = export_to(scripted)
    with sdk.request(name="root", user_id="u-1"):
        with sdk.llm_call(model="gpt-4o", input_tokens=np.int64(12), output_tokens=3) as call:
            call.set_attribute("route", "default")
    assert tracer.flush(5)
    assert tracer.stats() | {"queued": 0} == {
        "enqueued": 2,
        "sent": 2,
        "dropped": 0,
        "send_failures": 0,
        "invalid": 0,
        "queued": 0,
    }
    [(headers, body, _, _)] = scripted.requests
    assert headers["Authorization"] == f"Bearer {KEY}" and headers["Content-Encoding"] == "gzip"
    spans = {span["name"]: span for span in body}
    for span in spans.values():
        Span.model_validate({key: value for key, value in span.items() if key != "user_id"})
    assert spans["chat"]["input_tokens"] == 12  # a numpy integer is sent as a number
    assert spans["root"]["user_id"] == "u-1"  # no salt here: the receiver hashes it with the tenant's
    assert "tenant_id" not in spans["chat"]  # the receiver takes it from the key


def test_refused_spans_are_counted_invalid_and_the_rest_sent(scripted: ScriptedReceiver) -> None:
    def refuse_the_second(spans: list[dict[str, Any]]) -> tuple[int, Any, dict[str, str]]:
        errors = [{"index": 1, "reason": "input_tokens: must be >= 0", "errors": []}]
        return 207, {"accepted": len(spans) - 1, "rejected": 1, "errors": errors}, {}

    scripted.answer = refuse_the_second
    tracer = export_to(scripted, batch_size=3, flush_interval_s=5)
    for i in range(3):
        with sdk.tool_call(tool_name=f"t{i}"):
            pass
    assert tracer.flush(5)
    stats = tracer.stats()
    assert (stats["sent"], stats["invalid"], stats["dropped"]) == (2, 1, 0)


def test_a_body_too_large_is_halved_until_it_fits(scripted: ScriptedReceiver) -> None:
    def at_most_two(spans: list[dict[str, Any]]) -> tuple[int, Any, dict[str, str]]:
        if len(spans) > 2 or any(span["name"] == "huge" for span in spans):
            return 413, {"error": "body too large"}, {}
        return accept_all(spans)

    scripted.answer = at_most_two
    tracer = export_to(scripted, batch_size=7, flush_interval_s=5)
    for i in range(7):
        with sdk.tool_call(name="huge" if i == 4 else f"t{i}", tool_name="lookup"):
            pass
    assert tracer.flush(5)
    stats = tracer.stats()
    assert (stats["sent"], stats["invalid"], stats["send_failures"]) == (6, 1, 0)
    assert sorted(span["name"] for span in scripted.delivered) == [f"t{i}" for i in range(7) if i != 4]


def test_busy_answers_are_retried_no_sooner_than_retry_after(scripted: ScriptedReceiver) -> None:
    answers = iter([(503, {"error": "Kafka unavailable"}, {"Retry-After": "0.4"}), (429, {"error": "slow down"}, {})])
    scripted.answer = lambda spans: next(answers, accept_all(spans))
    tracer = export_to(scripted)
    for _ in range(5):
        with sdk.llm_call():
            pass
    assert tracer.flush(10)
    stats = tracer.stats()
    assert (stats["sent"], stats["send_failures"], stats["dropped"]) == (5, 2, 0)
    first, second, third = (arrived for _, _, arrived, _ in scripted.requests)
    assert second - first >= 0.4 and third > second
    assert len(scripted.delivered) == 5


def test_a_refused_api_key_drops_the_batch_and_says_why(
    scripted: ScriptedReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    scripted.answer = lambda spans: (403, {"error": "unknown API key"}, {})
    tracer = export_to(scripted)
    with caplog.at_level(logging.ERROR, logger="spanline.sdk"):
        for _ in range(4):
            with sdk.llm_call():
                pass
        assert tracer.flush(5)
    stats = tracer.stats()
    assert (stats["sent"], stats["dropped"], stats["send_failures"]) == (0, 4, 0)
    assert len(scripted.requests) == 1  # not retried
    assert "refused the API key (403" in caplog.text and "SPANLINE_SDK_API_KEY" in caplog.text
    for _ in range(3):  # every later batch is refused too: still one error line
        with sdk.llm_call():
            pass
        assert tracer.flush(5)
    assert len(scripted.requests) == 4 and len(caplog.records) == 1


def test_a_span_that_is_not_json_loses_only_itself(scripted: ScriptedReceiver) -> None:
    tracer = export_to(scripted, batch_size=3, flush_interval_s=5)
    with sdk.eval_span(eval_name="bad", eval_score=math.nan):
        pass
    with sdk.eval_span(eval_name="odd", attributes={"k": object()}):  # type: ignore[dict-item]
        pass
    with sdk.eval_span(eval_name="good", eval_score=0.5):
        pass
    assert tracer.flush(5)
    stats = tracer.stats()
    assert (stats["sent"], stats["invalid"]) == (1, 2)
    assert [span["name"] for span in scripted.delivered] == ["good"]


def test_a_keep_alive_connection_closed_while_idle_is_reopened_quietly() -> None:
    server = ScriptedReceiver(keepalive_timeout_s=0.2)
    try:
        tracer = export_to(server)
        for _ in range(2):
            with sdk.llm_call():
                pass
            assert tracer.flush(5)
            time.sleep(0.6)  # past the receiver's keep-alive: it closes the connection
        stats = tracer.stats()
        assert (stats["sent"], stats["send_failures"]) == (2, 0)
    finally:
        sdk.shutdown()
        server.close()


def test_a_receiver_that_is_down_neither_blocks_nor_raises() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    tracer = sdk.configure("bot", endpoint=f"http://127.0.0.1:{closed_port}", api_key=KEY)
    started = time.perf_counter()
    for _ in range(1_000):
        with sdk.llm_call():
            pass
    assert time.perf_counter() - started < 0.5
    sdk.shutdown(timeout_s=0.3)
    assert time.perf_counter() - started < 2.0
    stats = tracer.stats()
    assert stats["sent"] == 0 and stats["dropped"] == 1_000 and stats["send_failures"] >= 1


# --- the real receiver -------------------------------------------------------------------

MASTER = "sdk-http-master-secret"


@pytest.fixture(scope="module")
def receiver(tansu_kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    topic = f"sdk-http-{uuid.uuid4().hex[:8]}"
    with receiver_on(
        tansu_kafka.bootstrap_servers, tmp_path_factory.mktemp("sdk-http"), topic, KEY, MASTER, 8 * 1024 * 1024
    ) as server:
        yield server


@pytest.mark.e2e  # a real tansu broker behind the real receiver
def test_spans_reach_kafka_through_the_receiver_as_the_key_s_tenant(receiver: Receiver) -> None:
    run = f"sdk{uuid.uuid4().hex[:6]}"
    tracer = sdk.configure(run, endpoint=receiver.url, api_key=KEY, tenant_id="not-acme")
    for i in range(300):
        with sdk.request(name="root", user_id=f"user-{i % 5}"):
            with sdk.llm_call(name="chat", model="gpt-4o-mini", input_tokens=100, output_tokens=10):
                pass
    with sdk.llm_call(name="broken", input_tokens=10, cache_read_tokens=50):  # parts exceed the whole
        pass
    assert tracer.flush(30)
    sdk.shutdown()
    stats = tracer.stats()
    assert (stats["sent"], stats["invalid"], stats["dropped"]) == (600, 1, 0)

    settings = receiver.settings
    spans = [s for batch in read_topic(settings.bootstrap_servers, settings.topic_spans) for s in batch]
    mine = [Span.model_validate(span) for span in spans if span["service"] == run]
    assert len(mine) == 600 and len({span.span_id for span in mine}) == 600
    assert {span.tenant_id for span in mine} == {"acme"}  # the key decides, not the SDK's tenant_id
    salt = tenant_salt(MASTER.encode(), "acme")
    assert {span.user_id_hash for span in mine if span.kind == "request"} == {
        hash_user_id(salt, f"user-{i}") for i in range(5)
    }
    assert b"user-" not in orjson.dumps([span for span in spans if span["service"] == run])
    letters = [letter for letter in read_topic(settings.bootstrap_servers, settings.topic_dlq)]
    [letter] = [letter for letter in letters if letter["payload"].get("service") == run]
    assert "cache_read_tokens" in letter["reason"] and letter["tenant_id"] == "acme"
