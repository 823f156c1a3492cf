"""The receiver's body inflation and its OTLP answers, without a broker (the real receiver's
answers over HTTP are in tests/test_receiver.py)."""

from __future__ import annotations

import gzip
import re
import zlib

import orjson
import pytest
from google.rpc.code_pb2 import Code
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from spanline.collectors.receiver.encoding import (
    InflatedTooLarge,
    UndecodableBody,
    UnsupportedEncoding,
    inflate,
)
from spanline.collectors.receiver.otlp_response import (
    NAMED_SPANS,
    REASON_CHARS,
    export_response,
    failure_response,
    rejection_message,
)
from spanline.contract.validation import FieldError, InvalidItem

BODY = b'{"resourceSpans": []}' * 50


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        (BODY, ""),
        (BODY, "identity"),
        (gzip.compress(BODY), "gzip"),
        (gzip.compress(BODY), "GZip "),
        (gzip.compress(BODY), "x-gzip"),
        (zlib.compress(BODY), "deflate"),
    ],
)
def test_bodies_inflate_from_their_content_encoding(encoded: bytes, encoding: str) -> None:
    assert inflate(encoded, encoding, len(BODY)) == BODY


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        (b"\x1f\x8bnot-gzip", "the gzip body could not be decompressed: Error -3"),
        (b"plain text sent as gzip", "the gzip body could not be decompressed: Error -3"),
        (gzip.compress(BODY)[:-6], "the gzip body could not be decompressed: the compressed stream is cut short"),
        (gzip.compress(BODY)[:20], "the gzip body could not be decompressed: the compressed stream is cut short"),
        (
            gzip.compress(BODY) + b"junk",
            "the gzip body could not be decompressed: 4 bytes follow the compressed stream",
        ),
        (b"", "the gzip body could not be decompressed: the compressed stream is cut short"),
    ],
)
def test_a_corrupt_gzip_body_says_gzip_and_what_is_wrong(encoded: bytes, message: str) -> None:
    with pytest.raises(UndecodableBody, match=re.escape(message)):
        inflate(encoded, "gzip", 1 << 20)


def test_the_size_limit_holds_for_the_inflated_body() -> None:
    bomb = gzip.compress(b" " * 10_000_000)
    assert len(bomb) < 20_000
    with pytest.raises(InflatedTooLarge, match="inflates to more than 65536 bytes"):
        inflate(bomb, "gzip", 65536)
    assert inflate(gzip.compress(b"x" * 65536), "gzip", 65536) == b"x" * 65536


def test_unknown_encodings_are_refused_by_name() -> None:
    with pytest.raises(UnsupportedEncoding, match="'br' is not supported: send gzip, deflate or none"):
        inflate(BODY, "br", 1 << 20)


def invalid(index: int, span_id: str | None, *errors: tuple[str, str]) -> InvalidItem:
    item = {"span_id": span_id, "name": "x"} if span_id is not None else {"name": "x"}
    return InvalidItem(index, item, tuple(FieldError(field, message) for field, message in errors))


def test_the_rejection_message_names_each_span_by_id_with_its_reasons() -> None:
    message = rejection_message(
        [
            invalid(1, "c7ad6b7169203331", ("end_time", "end_time is before start_time")),
            invalid(4, "00f067aa0ba902b7", ("input_tokens", "must be >= 0"), ("", "cost is not a number")),
            invalid(6, None, ("service", "Field required")),
        ]
    )
    assert message == (
        "span c7ad6b7169203331: end_time: end_time is before start_time; "
        "span 00f067aa0ba902b7: input_tokens: must be >= 0, cost is not a number; "
        "span #6 (no span id): service: Field required"
    )


def test_the_rejection_message_of_a_huge_batch_is_bounded_and_counts_the_rest() -> None:
    rejected = [invalid(i, f"{i:016x}", ("attributes", "x" * 5000)) for i in range(500)]
    message = rejection_message(rejected)
    assert message.count("span ") == NAMED_SPANS
    assert f"span {NAMED_SPANS - 1:016x}: " in message and f"span {NAMED_SPANS:016x}: " not in message
    assert message.endswith(f"and {500 - NAMED_SPANS} more rejected spans (each is in the dead-letter topic)")
    assert len(message) < NAMED_SPANS * (REASON_CHARS + 30) + 100


def test_partial_success_in_protobuf_and_in_otlp_json() -> None:
    rejected = [invalid(2, "c7ad6b7169203331", ("end_time", "end_time is before start_time"))]
    answer = ExportTraceServiceResponse.FromString(export_response(rejected, "application/x-protobuf").body)
    assert answer.partial_success.rejected_spans == 1
    assert answer.partial_success.error_message == "span c7ad6b7169203331: end_time: end_time is before start_time"
    json_answer = export_response(rejected, "application/json")
    assert json_answer.content_type == "application/json"
    assert orjson.loads(json_answer.body) == {
        "partialSuccess": {
            "rejectedSpans": "1",  # proto3 JSON writes int64 as a string
            "errorMessage": "span c7ad6b7169203331: end_time: end_time is before start_time",
        }
    }


def test_full_success_leaves_partial_success_unset() -> None:
    assert export_response([], "application/x-protobuf").body == b""
    assert orjson.loads(export_response([], "application/json").body) == {}


def test_failures_are_a_status_in_the_request_encoding_keeping_retry_after() -> None:
    answer = failure_response(503, "Kafka is unavailable; retry", "application/x-protobuf", {"Retry-After": "5"})
    assert (answer.status, answer.content_type, answer.headers["Retry-After"]) == (503, "application/x-protobuf", "5")
    assert Status.FromString(answer.body) == Status(code=Code.UNAVAILABLE, message="Kafka is unavailable; retry")
    json_answer = failure_response(400, "bad body", "application/json", {"Content-Type": "text/plain"})
    assert json_answer.content_type == "application/json"
    assert orjson.loads(json_answer.body) == {"code": Code.INVALID_ARGUMENT, "message": "bad body"}
