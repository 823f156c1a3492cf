"""The Python SDK: nesting, errors, decorators, usage extraction, privacy, the queue, Kafka.

Spans are captured with a recording transport (the SDK's documented ``transport=`` hook);
one test publishes through a real tansu broker with the Kafka export and reads the topic back.
The HTTP export to the receiver is tests/test_sdk_http.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

import spanline_sdk as sdk
from spanline.contract.hashing import hash_user_id, tenant_salt
from spanline.contract.schema import Span
from spanline.errors import ConfigError as ServerConfigError
from spanline.kafka.publish import SOURCE_HEADER, partition_for
from spanline.settings import load_settings
from spanline_sdk.fields import SETTABLE
from spanline_sdk.usage import extract_response_fields, extract_usage

MASTER = b"test-master-secret"
#: What `spanline tenant-salt acme` prints for MASTER: all the SDK is ever given.
SALT = tenant_salt(MASTER, "acme")


class Recorder:
    """A transport that keeps every batch it is given and acks at once."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def send(self, spans: list[dict[str, Any]], timeout_s: float) -> list[sdk.Rejected]:
        self.batches.append(orjson.loads(orjson.dumps(spans)))
        return []

    @property
    def spans(self) -> list[dict[str, Any]]:
        return [span for batch in self.batches for span in batch]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Default tracer wired to a Recorder; teardown checks every produced span is canonical."""
    transport = Recorder()
    sdk.configure("support-bot", tenant_id="acme", tenant_salt=SALT, transport=transport, flush_interval_s=0.01)
    yield transport
    sdk.shutdown(timeout_s=5)
    for span in transport.spans:
        Span.model_validate(span)


def sent(recorder: Recorder) -> dict[str, dict[str, Any]]:
    """Flush the default tracer and return the spans it sent, by name, as validated full dicts."""
    tracer = sdk.default_tracer()
    assert tracer is not None and tracer.flush(5)
    spans = [Span.model_validate(span).model_dump() for span in recorder.spans]
    return {span["name"]: span for span in spans}


# --- nesting and propagation -------------------------------------------------------------


def test_nested_spans_share_the_trace_and_point_at_their_parent(recorder: Recorder) -> None:
    with sdk.request(name="handle", feature="support", user_id="u-1", session_id="s-9") as root:
        with sdk.llm_call(name="draft", provider="openai", model="gpt-4o") as llm:
            with sdk.tool_call(tool_name="search_web"):
                time.sleep(0.002)
        assert sdk.current_span() is root
    assert sdk.current_span() is None
    spans = sent(recorder)
    assert set(spans) == {"handle", "draft", "search_web"}
    handle, draft, tool = spans["handle"], spans["draft"], spans["search_web"]
    assert handle["parent_span_id"] is None and handle["kind"] == "request"
    assert draft["parent_span_id"] == handle["span_id"] == root.span_id
    assert tool["parent_span_id"] == draft["span_id"] == llm.span_id
    assert len({handle["trace_id"], draft["trace_id"], tool["trace_id"]}) == 1
    assert len(handle["trace_id"]) == 32 and len(tool["span_id"]) == 16
    # children inherit feature, user and session; the SDK stamps tenant and service
    assert tool["feature"] == "support" and tool["session_id"] == "s-9"
    assert tool["user_id_hash"] == handle["user_id_hash"]
    assert {s["tenant_id"] for s in spans.values()} == {"acme"}
    assert draft["model_requested"] == "gpt-4o" and tool["tool_name"] == "search_web"
    assert tool["duration_ms"] >= 2.0
    assert handle["duration_ms"] >= draft["duration_ms"] >= tool["duration_ms"]
    assert handle["start_time"] <= draft["start_time"] <= tool["start_time"]
    ends = [span["start_time"] + timedelta(milliseconds=span["duration_ms"]) for span in (handle, draft, tool)]
    # the worker derives end_time from these two; float ms carry a few µs of rounding
    assert all(outer >= inner - timedelta(microseconds=10) for outer, inner in itertools.pairwise(ends))


def test_sibling_traces_get_distinct_ids_and_an_explicit_trace_id_is_kept(recorder: Recorder) -> None:
    with sdk.request(name="a"):
        pass
    with sdk.request(name="b", trace_id="req-7f3a"):
        with sdk.llm_call(name="b-child"):
            pass
    spans = sent(recorder)
    assert spans["a"]["trace_id"] != spans["b"]["trace_id"]
    assert spans["b"]["trace_id"] == spans["b-child"]["trace_id"] == "req-7f3a"


def test_asyncio_gather_keeps_each_task_under_its_own_parent(recorder: Recorder) -> None:
    async def answer(i: int) -> None:
        async with sdk.llm_call(name=f"llm-{i}", model="gpt-4o-mini"):
            await asyncio.sleep(0.01 * (3 - i))  # finish in reverse order, interleaved
            async with sdk.tool_call(name=f"tool-{i}", tool_name="lookup"):
                await asyncio.sleep(0.001)

    async def main() -> None:
        async with sdk.request(name="root"):
            await asyncio.gather(*(answer(i) for i in range(3)))

    asyncio.run(main())
    spans = sent(recorder)
    root = spans["root"]
    for i in range(3):
        assert spans[f"llm-{i}"]["parent_span_id"] == root["span_id"]
        assert spans[f"tool-{i}"]["parent_span_id"] == spans[f"llm-{i}"]["span_id"]
        assert spans[f"tool-{i}"]["trace_id"] == root["trace_id"]


def test_threads_inherit_the_parent_through_copy_context(recorder: Recorder) -> None:
    def work(i: int) -> None:
        with sdk.retrieval(name=f"retrieve-{i}", index_name="docs", top_k=5):
            pass

    with sdk.request(name="root"):
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(work, i)) for i in range(4)]
        bare = threading.Thread(target=work, args=(99,))  # no context copy: a new trace
        for thread in [*threads, bare]:
            thread.start()
        for thread in [*threads, bare]:
            thread.join()
    spans = sent(recorder)
    for i in range(4):
        assert spans[f"retrieve-{i}"]["parent_span_id"] == spans["root"]["span_id"]
        assert spans[f"retrieve-{i}"]["trace_id"] == spans["root"]["trace_id"]
    assert spans["retrieve-99"]["parent_span_id"] is None
    assert spans["retrieve-99"]["trace_id"] != spans["root"]["trace_id"]


# --- errors --------------------------------------------------------------------------------


class APIStatusError(Exception):
    """Shaped like openai/anthropic status errors: status_code, code, response.headers."""

    def __init__(
        self, message: str, status_code: int, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.response = SimpleNamespace(status_code=status_code, headers=headers or {})


class RateLimitError(APIStatusError):
    pass


class APITimeoutError(Exception):
    pass


class HTTPError(Exception):
    """Shaped like requests/httpx errors: the status lives on .response only."""

    def __init__(self, status: int) -> None:
        super().__init__(f"{status} error")
        self.response = SimpleNamespace(status_code=status, headers={})


@pytest.mark.parametrize(
    ("exc", "error_type", "http_status"),
    [
        (RateLimitError("Rate limit reached", 429, headers={"retry-after": "7"}), "rate_limited", 429),
        (APIStatusError("slow down", 429), "rate_limited", 429),
        (TimeoutError("read timed out"), "timeout", None),
        (TimeoutError(), "timeout", None),
        (APITimeoutError("Request timed out."), "timeout", None),
        (HTTPError(503), "server_error", 503),
        (APIStatusError("Overloaded", 529), "server_error", 529),
        (
            APIStatusError(
                "This model's maximum context length is 128000 tokens.", 400, code="context_length_exceeded"
            ),
            "context_length_exceeded",
            400,
        ),
        (APIStatusError("prompt is too long: 201000 tokens > 200000 maximum", 400), "context_length_exceeded", 400),
        (
            APIStatusError(
                "The response was filtered due to Azure OpenAI's content management policy", 400, code="content_filter"
            ),
            "content_filter",
            400,
        ),
        (ValueError("bad json"), "other", None),
        (HTTPError(404), "other", 404),
    ],
)
def test_exceptions_mark_the_span_and_are_reraised_unchanged(
    recorder: Recorder, exc: BaseException, error_type: str, http_status: int | None
) -> None:
    with pytest.raises(type(exc)) as raised:
        with sdk.llm_call(name="call", provider="openai"):
            raise exc
    assert raised.value is exc
    span = sent(recorder)["call"]
    assert span["status"] == "error"
    assert span["error_type"] == error_type
    assert span["http_status"] == http_status
    assert span["attributes"]["exception.type"].endswith(type(exc).__qualname__)
    if error_type == "rate_limited" and "retry-after" in exc.response.headers:  # type: ignore[attr-defined]
        assert span["retry_after_s"] == 7.0


def test_tool_failures_default_to_tool_error_and_cancellation_to_cancelled(recorder: Recorder) -> None:
    with pytest.raises(KeyError):
        with sdk.tool_call(tool_name="calculator"):
            raise KeyError("x")

    async def cancelled() -> None:
        async with sdk.agent_step(name="step"):
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(1)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())
    spans = sent(recorder)
    assert spans["calculator"]["error_type"] == "tool_error"
    assert spans["step"]["error_type"] == "cancelled"


def test_a_clean_exit_is_ok_and_an_explicit_error_type_is_kept(recorder: Recorder) -> None:
    with sdk.llm_call(name="fine"):
        pass
    with pytest.raises(RuntimeError):
        with sdk.llm_call(name="refused") as span:
            span.set(error_type="refusal")
            raise RuntimeError("model refused")
    spans = sent(recorder)
    assert spans["fine"]["status"] == "ok" and spans["fine"]["error_type"] is None
    assert spans["refused"]["status"] == "error" and spans["refused"]["error_type"] == "refusal"


# --- decorators and span API ---------------------------------------------------------------


def test_decorators_open_one_fresh_span_per_call_sync_and_async(recorder: Recorder) -> None:
    @sdk.tool_call(tool_name="search_web")
    def search(query: str) -> str:
        """Search the web."""
        current = sdk.current_span()
        assert current is not None
        current.set_attribute("query.length", len(query))
        return query.upper()

    @sdk.llm_call(name="summarise", provider="anthropic", model="claude-sonnet-4")
    async def summarise(text: str) -> str:
        current = sdk.current_span()
        assert current is not None
        current.record_response(
            {
                "model": "claude-sonnet-4-20250514",
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 12, "output_tokens": 3},
            }
        )
        return text[:3]

    assert search.__name__ == "search" and search.__doc__ == "Search the web."
    assert search("abc") == "ABC" and search("hello") == "HELLO"
    assert asyncio.run(summarise("hello")) == "hel"
    tracer = sdk.default_tracer()
    assert tracer is not None and tracer.flush(5)
    tools = [s for s in recorder.spans if s["kind"] == "tool"]
    assert len(tools) == 2 and tools[0]["span_id"] != tools[1]["span_id"]
    assert sorted(s["attributes"]["query.length"] for s in tools) == ["3", "5"]
    assert {s["name"] for s in tools} == {"search_web"}
    llm = next(s for s in recorder.spans if s["kind"] == "llm")
    assert (llm["model_requested"], llm["model_response"]) == ("claude-sonnet-4", "claude-sonnet-4-20250514")
    assert (llm["input_tokens"], llm["output_tokens"], llm["finish_reason"]) == (12, 3, "end_turn")


def test_decorating_a_generator_is_refused() -> None:
    with pytest.raises(TypeError, match="generator"):

        @sdk.llm_call()
        def stream() -> Iterator[str]:
            yield "token"


def test_unknown_field_names_fail_where_they_are_written() -> None:
    with pytest.raises(TypeError, match="input_tokenz"):
        sdk.llm_call(input_tokenz=3)  # type: ignore[call-arg]
    with sdk.llm_call() as span, pytest.raises(TypeError, match="colour"):
        span.set(colour="red")  # type: ignore[call-arg]


def test_settable_fields_are_schema_fields_or_documented_shorthands() -> None:
    assert SETTABLE - set(Span.model_fields) == {"model", "user_id"}


def test_first_token_time_and_all_span_kinds(recorder: Recorder) -> None:
    with sdk.llm_call(name="stream", model="gpt-4o") as span:
        time.sleep(0.003)
        span.mark_first_token()
        time.sleep(0.003)
        span.mark_first_token()
    with sdk.embedding_call(model="text-embedding-3-small", input_tokens=8):
        pass
    with sdk.rerank(provider="cohere", top_k=3):
        pass
    with sdk.cache_lookup(cache_layer="semantic", cache_hit=True, cache_similarity=0.97):
        pass
    with sdk.eval_span(eval_name="recall@5", eval_score=0.8, eval_passed=True):
        pass
    with sdk.index_build(name="refresh", index_name="acme-docs") as build:
        build.set(index_documents=4_812, index_chunks=20_311)
    with sdk.request(name="answer") as answer, sdk.escalation(name="user_asked"):
        pass
    with sdk.feedback(name="thumbs", trace_id=answer.trace_id, eval_name="thumbs", eval_score=0.0, eval_passed=False):
        pass
    spans = sent(recorder)
    assert spans["user_asked"]["kind"] == "escalation" and spans["user_asked"]["parent_span_id"] is not None
    assert spans["thumbs"]["kind"] == "feedback" and spans["thumbs"]["trace_id"] == spans["answer"]["trace_id"]
    assert spans["thumbs"]["eval_passed"] is False
    assert spans["refresh"]["kind"] == "index_build"
    assert (spans["refresh"]["index_documents"], spans["refresh"]["index_chunks"]) == (4_812, 20_311)
    stream = spans["stream"]
    assert 3.0 <= stream["ttft_ms"] < stream["duration_ms"]
    assert spans["embeddings"]["embedding_model"] == "text-embedding-3-small"
    assert spans["rerank"]["kind"] == "rerank" and spans["cache_lookup"]["cache_layer"] == "semantic"
    assert spans["recall@5"]["kind"] == "eval" and spans["recall@5"]["eval_passed"] is True


def test_spans_before_configure_and_after_shutdown_are_discarded_quietly() -> None:
    sdk.shutdown()
    assert sdk.default_tracer() is None
    with sdk.llm_call(name="nowhere") as span:
        span.set(input_tokens=1)


# --- usage extraction ----------------------------------------------------------------------

OPENAI_CHAT = {
    "id": "chatcmpl-9",
    "object": "chat.completion",
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0},
    },
}
OPENAI_RESPONSES = {
    "id": "resp_1",
    "object": "response",
    "model": "o3-2025-04-16",
    "status": "completed",
    "usage": {
        "input_tokens": 5000,
        "output_tokens": 900,
        "total_tokens": 5900,
        "input_tokens_details": {"cached_tokens": 4096},
        "output_tokens_details": {"reasoning_tokens": 640},
    },
}
ANTHROPIC_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [{"type": "text", "text": "Hello"}],
    "stop_reason": "max_tokens",
    "usage": {
        "input_tokens": 50,
        "output_tokens": 400,
        "cache_read_input_tokens": 1800,
        "cache_creation_input_tokens": 248,
    },
}


def as_objects(value: Any) -> Any:
    """The same payload shaped like SDK response objects (attribute access)."""
    if isinstance(value, dict):
        return SimpleNamespace(**{key: as_objects(item) for key, item in value.items()})
    if isinstance(value, list):
        return [as_objects(item) for item in value]
    return value


@pytest.mark.parametrize("shape", [lambda r: r, as_objects], ids=["dict", "object"])
@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            OPENAI_CHAT,
            {
                "input_tokens": 2006,
                "output_tokens": 300,
                "cache_read_tokens": 1920,
                "reasoning_tokens": 128,
                "model_response": "gpt-4o-2024-08-06",
                "finish_reason": "stop",
            },
        ),
        (
            OPENAI_RESPONSES,
            {
                "input_tokens": 5000,
                "output_tokens": 900,
                "cache_read_tokens": 4096,
                "reasoning_tokens": 640,
                "model_response": "o3-2025-04-16",
                "finish_reason": "completed",
            },
        ),
        # Anthropic's input_tokens excludes cache reads and writes: canonical input adds them back
        (
            ANTHROPIC_MESSAGE,
            {
                "input_tokens": 50 + 1800 + 248,
                "output_tokens": 400,
                "cache_read_tokens": 1800,
                "cache_write_tokens": 248,
                "model_response": "claude-sonnet-4-20250514",
                "finish_reason": "max_tokens",
            },
        ),
    ],
    ids=["openai-chat", "openai-responses", "anthropic"],
)
def test_usage_extraction_is_canonical(shape: Any, response: dict[str, Any], expected: dict[str, Any]) -> None:
    assert extract_response_fields(shape(response)) == expected


def test_usage_edge_cases() -> None:
    incomplete = {**OPENAI_RESPONSES, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    assert extract_response_fields(incomplete)["finish_reason"] == "max_output_tokens"
    embeddings = {"model": "text-embedding-3-small", "usage": {"prompt_tokens": 8, "total_tokens": 8}}
    assert extract_usage(embeddings) == {
        "input_tokens": 8,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "reasoning_tokens": 0,
    }
    # SDK objects carry cache fields set to None when there was no caching
    anthropic_uncached = as_objects(
        {
            **ANTHROPIC_MESSAGE,
            "usage": {
                "input_tokens": 50,
                "output_tokens": 4,
                "cache_read_input_tokens": None,
                "cache_creation_input_tokens": None,
            },
        }
    )
    assert extract_usage(anthropic_uncached)["input_tokens"] == 50
    assert extract_response_fields({"no": "usage"}) == {}
    assert extract_response_fields(None) == {}


def test_recorded_usage_lands_on_the_span_and_validates(recorder: Recorder) -> None:
    for name, response in [("chat", OPENAI_CHAT), ("responses", OPENAI_RESPONSES), ("messages", ANTHROPIC_MESSAGE)]:
        with sdk.llm_call(name=name, provider="x") as span:
            span.record_response(as_objects(response))
        with sdk.llm_call(name="broken-response") as span:
            span.record_response(object())
    spans = sent(recorder)
    assert spans["messages"]["input_tokens"] == 2098 and spans["messages"]["cache_write_tokens"] == 248
    assert spans["chat"]["reasoning_tokens"] == 128 and spans["responses"]["cache_read_tokens"] == 4096


# --- privacy -------------------------------------------------------------------------------


def test_user_ids_are_hashed_with_the_tenant_salt_and_never_sent_raw(recorder: Recorder) -> None:
    with sdk.llm_call(name="call", user_id="alice@example.com"):
        pass
    span = sent(recorder)["call"]
    assert span["user_id_hash"] == hash_user_id(SALT, "alice@example.com")
    assert span["user_id_hash"] != hash_user_id(tenant_salt(MASTER, "globex"), "alice@example.com")
    assert b"alice" not in orjson.dumps(recorder.batches)


def test_content_is_not_sent_unless_capture_is_on(recorder: Recorder) -> None:
    with sdk.llm_call(name="call", content="my email is bob@example.com"):
        pass
    assert sent(recorder)["call"]["content"] is None
    assert b"bob@" not in orjson.dumps(recorder.batches)


def test_captured_content_is_redacted() -> None:
    transport = Recorder()
    tracer = sdk.configure("bot", tenant_id="acme", tenant_salt=SALT, transport=transport, capture_content=True)
    text = (
        "Mail jane.roe@example.org or call +1 415 555 0134 / (212) 555-0199. "
        "Key sk-proj-Ab3dEf6hIj9kLm2nOp5q and AKIAIOSFODNN7EXAMPLE. "
        "Card 4111 1111 1111 1111. Order 1234567890123 ships 2024-01-15."
    )
    with sdk.llm_call(name="call", content=text):
        pass
    assert tracer.flush(5)
    sdk.shutdown()
    content = transport.spans[0]["content"]
    for secret in ("jane.roe", "555 0134", "555-0199", "sk-proj", "AKIA", "4111"):
        assert secret not in content
    assert content.count("[REDACTED]") == 6
    assert "Order 1234567890123 ships 2024-01-15." in content  # not a valid card number, not a phone


def test_a_second_tracer_reports_its_own_tenant_with_its_own_salt(recorder: Recorder) -> None:
    other = Recorder()
    globex = sdk.Tracer(
        service="search",
        tenant_id="globex",
        tenant_salt=tenant_salt(MASTER, "globex"),
        open_transport=lambda: other,
        flush_interval_s=0.01,
    )
    with sdk.request(name="acme-root", user_id="u-1"):
        with globex.span("llm", name="globex-call", user_id="u-1"):
            pass
    assert globex.flush(5)
    globex.shutdown()
    acme = sent(recorder)
    assert set(acme) == {"acme-root"}
    [call] = other.spans
    assert call["tenant_id"] == "globex" and call["name"] == "globex-call"
    assert call["user_id_hash"] == hash_user_id(tenant_salt(MASTER, "globex"), "u-1")
    assert call["user_id_hash"] != acme["acme-root"]["user_id_hash"]


def test_a_forked_child_exports_through_its_own_worker(recorder: Recorder) -> None:
    with sdk.llm_call(name="parent"):
        pass
    tracer = sdk.default_tracer()
    assert tracer is not None and tracer.flush(5)
    pid = os.fork()
    if pid == 0:  # child: the parent's worker thread does not exist here
        with sdk.llm_call(name="child"):
            pass
        child = sdk.default_tracer()
        ok = child is not None and child.flush(5) and [s["name"] for s in recorder.spans] == ["parent", "child"]
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [s["name"] for s in recorder.spans] == ["parent"]


# --- the queue: never block, never raise, count everything ---------------------------------


class BlockingTransport:
    """A transport that never returns until released (a hung broker connection)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def send(self, spans: list[dict[str, Any]], timeout_s: float) -> list[sdk.Rejected]:
        self.calls += 1
        self.release.wait()
        return []


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    transport = BlockingTransport()
    tracer = sdk.configure(
        "bot",
        tenant_id="acme",
        transport=transport,
        queue_size=50,
        batch_size=10,
        flush_interval_s=0.01,
    )
    try:
        with sdk.llm_call():  # let the worker take one batch and hang inside send
            pass
        deadline = time.monotonic() + 5
        while transport.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert transport.calls == 1
        slowest = 0.0
        for _ in range(2_000):
            started = time.perf_counter()
            with sdk.llm_call(provider="openai"):
                pass
            slowest = max(slowest, time.perf_counter() - started)
        assert slowest < 0.05
        stats = tracer.stats()
        assert stats["queued"] == 50 and stats["enqueued"] == 51 and stats["dropped"] == 2_001 - 51
        assert stats["sent"] == 0
        started = time.perf_counter()
        sdk.shutdown(timeout_s=0.2)  # the worker is stuck: shutdown gives up on it in time
        assert time.perf_counter() - started < 1.0
        stats = tracer.stats()
        assert stats["dropped"] == 2_001 and stats["sent"] == 0 and stats["queued"] == 0
    finally:
        transport.release.set()


class FlakyTransport(Recorder):
    """Raises ConnectionError on the first ``failures`` sends, then a timeout once."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    def send(self, spans: list[dict[str, Any]], timeout_s: float) -> list[sdk.Rejected]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError("broker unreachable")
        if self.attempts == self.failures + 1:
            raise TimeoutError("no ack")
        return super().send(spans, timeout_s)


def test_transport_failures_are_retried_and_never_reach_the_caller() -> None:
    transport = FlakyTransport(failures=2)
    tracer = sdk.configure("bot", tenant_id="acme", transport=transport, flush_interval_s=0.01)
    for i in range(300):
        with sdk.tool_call(tool_name=f"t{i % 3}"):
            pass
    assert tracer.flush(10)
    stats = tracer.stats()
    sdk.shutdown()
    assert stats["send_failures"] == 3 and stats["sent"] == 300 and stats["dropped"] == 0
    assert len(transport.spans) == 300 and len({s["span_id"] for s in transport.spans}) == 300


def test_kafka_down_neither_blocks_nor_raises() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    tracer = sdk.configure(
        "bot", kafka_bootstrap_servers=f"127.0.0.1:{closed_port}", tenant_id="acme", tenant_salt=SALT.hex()
    )
    started = time.perf_counter()
    for _ in range(1_000):
        with sdk.llm_call():
            pass
    assert time.perf_counter() - started < 0.5
    sdk.shutdown(timeout_s=0.3)
    assert time.perf_counter() - started < 2.0
    stats = tracer.stats()
    assert stats["sent"] == 0 and stats["dropped"] == 1_000


# --- configuration: explicit arguments, then SPANLINE_SDK_* only ---------------------------


def test_the_sdk_reads_only_its_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SPANLINE_HOME": "/nonexistent",
        "SPANLINE_USER_ID_SALT": "the-master-secret",
        "SPANLINE_NOT_A_SETTING": "1",  # the server's settings would refuse this one
        "SPANLINE_SDK_TENANT_SALT": SALT.hex(),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SPANLINE_SDK_API_KEY", raising=False)
    with pytest.raises(sdk.ConfigError, match="SPANLINE_SDK_API_KEY"):
        sdk.configure("bot")
    monkeypatch.setenv("SPANLINE_SDK_API_KEY", "sl-acme-key")
    assert sdk.configure("bot").stats()["enqueued"] == 0  # no connection is made here
    transport = Recorder()
    tracer = sdk.configure("bot", transport=transport)
    with sdk.llm_call(name="call", user_id="u-1"):
        pass
    assert tracer.flush(5)
    sdk.shutdown()
    [span] = transport.spans
    assert span["user_id_hash"] == hash_user_id(SALT, "u-1") and "user_id" not in span
    assert "tenant_id" not in span  # over HTTP the receiver stamps the API key's tenant


def test_without_a_salt_raw_user_ids_are_left_for_the_receiver_to_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPANLINE_SDK_TENANT_SALT", raising=False)
    transport = Recorder()
    tracer = sdk.configure("bot", transport=transport)
    with sdk.llm_call(name="call", user_id="u-1"):
        pass
    assert tracer.flush(5)
    sdk.shutdown()
    assert transport.spans[0]["user_id"] == "u-1" and "user_id_hash" not in transport.spans[0]


def test_misconfiguration_fails_at_configure_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPANLINE_SDK_TENANT_SALT", raising=False)
    with pytest.raises(sdk.ConfigError, match="tenant_id"):
        sdk.configure("bot", kafka_bootstrap_servers="127.0.0.1:9", tenant_salt=SALT)
    with pytest.raises(sdk.ConfigError, match="spanline tenant-salt acme"):
        sdk.configure("bot", kafka_bootstrap_servers="127.0.0.1:9", tenant_id="acme")
    with pytest.raises(sdk.ConfigError, match="hex"):
        sdk.configure("bot", kafka_bootstrap_servers="127.0.0.1:9", tenant_id="acme", tenant_salt="not hex")
    with pytest.raises(sdk.ConfigError, match="http"):
        sdk.configure("bot", endpoint="ftp://receiver", api_key="k")
    assert sdk.default_tracer() is None


def test_the_server_settings_leave_the_sdk_variables_alone() -> None:
    load_settings({"SPANLINE_SDK_ENDPOINT": "http://receiver:4318", "SPANLINE_SDK_API_KEY": "k"})
    with pytest.raises(ServerConfigError, match="SPANLINE_SDKX"):
        load_settings({"SPANLINE_SDKX": "1"})


# --- a real broker -------------------------------------------------------------------------


@pytest.mark.e2e  # a real tansu broker
def test_spans_reach_kafka_batched_and_valid(tansu_kafka: Any) -> None:
    bootstrap = tansu_kafka.bootstrap_servers
    topic = f"spans-sdk-{uuid.uuid4().hex[:8]}"  # its own topic: other tests share the broker
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    finally:
        admin.close()
    tracer = sdk.configure(
        "support-bot", kafka_bootstrap_servers=bootstrap, kafka_topic=topic, tenant_id="acme", tenant_salt=SALT.hex()
    )
    for trace in range(100):
        with sdk.request(name="root", user_id=f"user-{trace % 7}"):
            for step in range(9):
                with sdk.llm_call(name=f"step-{step}", model="gpt-4o", input_tokens=10, output_tokens=2):
                    pass
    sdk.shutdown(timeout_s=30)
    assert tracer.stats()["sent"] == 1_000

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2_000)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    spans: list[Span] = []
    messages = 0
    for message in consumer:
        batch = [Span.model_validate(item) for item in orjson.loads(message.value)]
        messages += 1
        assert dict(message.headers)[SOURCE_HEADER] == b"sdk"
        assert {partition_for(span.trace_id, len(partitions)) for span in batch} == {message.partition}
        spans.extend(batch)
    consumer.close()
    assert len(spans) == 1_000 and len({span.span_id for span in spans}) == 1_000
    assert len({span.trace_id for span in spans}) == 100
    assert messages < 100  # several spans per message
    assert {span.tenant_id for span in spans} == {"acme"}
    hashes = {hash_user_id(SALT, f"user-{user}") for user in range(7)}
    assert {span.user_id_hash for span in spans} == hashes  # the tenant's salt, as the receiver hashes
