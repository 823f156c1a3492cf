"""SDK cost on the caller's thread per span (docs/requirements.md §8: ≤ 5 µs), with OpenTelemetry's as reference.

Both SDKs create and end one LLM span with a handful of attributes per iteration and hand it
to a background exporter. Spanline's exports the way it does by default: JSON, gzip and an
HTTP POST with the API key, here to a loopback sink in another process that answers 200 (so
the exporter thread's real work competes with the caller for the GIL, the receiver's does
not); OTel's is a BatchSpanProcessor over an exporter that drops. The figure is what the
application thread pays. Reported: the best and the median of short rounds (the best round
is the cost without scheduler noise) for each SDK.

    python bench/sdk_overhead.py --rounds 50 --spans-per-round 2000
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import spanline_sdk as sdk
from bench.report import publish

#: A receiver stand-in that reads each body and answers 200, run as its own process.
SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""


def start_sink() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return sink, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    sink.kill()
    raise RuntimeError("the loopback sink did not start")


class DiscardingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def spanline_span() -> None:
    with sdk.llm_call(provider="openai", model="gpt-4o", route="default", user_id="u-1") as span:
        span.set(input_tokens=1200, output_tokens=300)


def otel_span_factory() -> tuple[Callable[[], None], TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DiscardingExporter(), max_queue_size=1_000_000))
    tracer = provider.get_tracer("bench")

    def otel_span() -> None:
        with tracer.start_as_current_span("chat gpt-4o") as span:
            span.set_attribute("gen_ai.provider.name", "openai")
            span.set_attribute("gen_ai.request.model", "gpt-4o")
            span.set_attribute("spanline.route", "default")
            span.set_attribute("gen_ai.usage.input_tokens", 1200)
            span.set_attribute("gen_ai.usage.output_tokens", 300)

    return otel_span, provider


def rounds_us(make_span: Callable[[], None], rounds: int, per_round: int) -> list[float]:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        for _ in range(per_round):
            make_span()
        timings.append((time.perf_counter_ns() - started) / per_round / 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--spans-per-round", type=int, default=2_000)
    args = parser.parse_args()

    sink, endpoint = start_sink()
    try:
        tracer = sdk.configure(
            "bench", endpoint=endpoint, api_key="bench-key", tenant_salt=b"bench-salt", queue_size=1_000_000
        )
        spanline_us = rounds_us(spanline_span, args.rounds, args.spans_per_round)
        tracer.flush(timeout_s=60)
        stats = tracer.stats()
        sdk.shutdown()
    finally:
        sink.kill()
    otel_span, provider = otel_span_factory()
    otel_us = rounds_us(otel_span, args.rounds, args.spans_per_round)
    provider.shutdown()

    publish(
        "sdk_overhead",
        {
            "spans_per_sdk": args.rounds * args.spans_per_round,
            "spanline_us_per_span_best": round(min(spanline_us), 2),
            "spanline_us_per_span_median": round(statistics.median(spanline_us), 2),
            "otel_sdk_us_per_span_best": round(min(otel_us), 2),
            "otel_sdk_us_per_span_median": round(statistics.median(otel_us), 2),
            "spanline_sent": stats["sent"],
            "spanline_dropped": stats["dropped"],
            "target_us_per_span": 5.0,
        },
    )


if __name__ == "__main__":
    main()
