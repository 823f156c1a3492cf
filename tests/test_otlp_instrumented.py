"""The real OpenInference OpenAI instrumentor, end to end through the OTLP mapping and pricing.

The real ``openai`` client calls a loopback fake of the Chat Completions endpoint whose answer
carries usage with cached prompt tokens; ``openinference-instrumentation-openai`` records the
span, the OTel SDK's own OTLP encoder turns it into an export request, and the receiver's decoder
and the worker's ``process_batch`` map and price it. This catches attribute names drifting in the
instrumentor, which hand-written spans cannot.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import orjson
import pytest
from genai_prices import Usage, calc_price
from google.protobuf.json_format import MessageToDict
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanline.collectors.otlp import decode_otlp
from spanline.contract.schema import Span
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_764_000_000,
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "SECRET answer"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 2_000,
        "completion_tokens": 150,
        "total_tokens": 2_150,
        "prompt_tokens_details": {"cached_tokens": 1_536},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


class _ChatCompletions(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = orjson.dumps(COMPLETION)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the test asserts on spans, not on the access log."""


@pytest.fixture
def fake_openai() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatCompletions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def recorded() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "chat-app"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        instrumentor.uninstrument()


def test_openinference_openai_chat_is_mapped_and_priced_at_the_cached_rate(
    fake_openai: str, recorded: InMemorySpanExporter
) -> None:
    client = openai.OpenAI(base_url=fake_openai, api_key="sk-test", max_retries=0)
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "SECRET question"}])
    request = encode_spans(recorded.get_finished_spans())

    as_json = MessageToDict(request)
    for resource_spans in as_json["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:  # OTLP/JSON ids are hex, not protobuf-JSON base64
                        span[key] = base64.b64decode(span[key]).hex()
    (chat,) = decode_otlp(request.SerializeToString(), "application/x-protobuf")
    assert decode_otlp(orjson.dumps(as_json), "application/json") == [chat]

    expected = {
        "kind": "llm",
        "service": "chat-app",
        "provider": "openai",
        "model_response": "gpt-4o-2024-08-06",
        "input_tokens": 2_000,
        "output_tokens": 150,
        "cache_read_tokens": 1_536,
    }
    assert {key: chat.get(key) for key in expected} == expected
    attributes = chat["attributes"]
    assert isinstance(attributes, dict) and attributes["spanline.convention"] == "openinference"
    assert "SECRET" not in orjson.dumps(chat).decode()
    Span.model_validate({**chat, "tenant_id": "acme"})

    value = orjson.dumps([{**chat, "tenant_id": "acme"}])
    processed = process_batch(
        Batch(0, 0, 0, [Message(0, 0, value, "otlp")], replayed=False), "spans", PriceCatalog.load()
    )
    assert not processed.dead_letters and processed.rows is not None
    row = processed.rows.iloc[0]
    start = row["start_time"].to_pydatetime()
    price = calc_price(
        Usage(input_tokens=2_000, cache_read_tokens=1_536, output_tokens=150),
        "gpt-4o-2024-08-06",
        provider_id="openai",
        genai_request_timestamp=start,
    )
    cached = calc_price(
        Usage(input_tokens=1_536, cache_read_tokens=1_536),
        "gpt-4o-2024-08-06",
        provider_id="openai",
        genai_request_timestamp=start,
    )
    assert row["cost_known"] == 1
    assert row["cost_usd"] == pytest.approx(float(price.total_price), rel=1e-12)
    assert row["cache_read_cost_usd"] == pytest.approx(float(cached.input_price), rel=1e-12)
