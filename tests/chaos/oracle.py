"""What the pipeline must do with each generated input, decided from the schema alone.

A span is valid iff ``Span.model_validate(item)`` succeeds. Its tenant is the item's own
``tenant_id`` when it comes straight from Kafka and the API key's tenant when it comes over HTTP
(the receiver stamps it). Its identity is (tenant_id, trace_id, span_id) as the schema
normalises them (whitespace stripped).

Decoding follows the wire contracts: a Kafka value is a JSON array of spans or one span object
(anything else, null included, is an undecodable message); a ``/v1/spans`` body is a JSON value
(an array's elements are the items, any other value is one item) or NDJSON; a ``/v1/traces`` body
is mapped by the receiver's own OTLP decoder (``decode_otlp``), whose output is then judged by
the schema like any other item. JSON is decoded with orjson, the parser of the receiver and the
worker: strict RFC 8259 (no NaN/Infinity, no lone surrogates, depth ≤ 1024, 64-bit numbers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from spanline.collectors.otlp import decode_otlp
from spanline.contract.schema import Span


class SpanKey(NamedTuple):
    tenant_id: str
    trace_id: str
    span_id: str


@dataclass(frozen=True)
class ValidItem:
    index: int
    key: SpanKey
    start_time: datetime


@dataclass(frozen=True)
class InvalidItem:
    index: int
    reason: str
    item: Any = field(repr=False)


@dataclass
class Verdict:
    """The fate of one Kafka message or HTTP body.

    ``rejected_whole`` is set when the message/body cannot be decoded at all (its reason).
    """

    valid: list[ValidItem] = field(default_factory=list)
    invalid: list[InvalidItem] = field(default_factory=list)
    rejected_whole: str | None = None


def judge_item(index: int, item: Any, tenant: str | None = None) -> ValidItem | InvalidItem:
    """One item: valid (with its key) or invalid (with the schema's reason)."""
    if not isinstance(item, dict):
        return InvalidItem(index, f"a {type(item).__name__}, not a JSON object", item)
    candidate = item if tenant is None else {**item, "tenant_id": tenant}
    try:
        span = Span.model_validate(candidate)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        return InvalidItem(index, f"{'.'.join(map(str, first['loc']))}: {first['msg']}", item)
    except Exception as exc:
        return InvalidItem(index, f"schema raised {type(exc).__name__}: {exc}", item)
    return ValidItem(index, SpanKey(span.tenant_id, span.trace_id, span.span_id), span.start_time)


def _judge_all(items: list[Any], tenant: str | None) -> Verdict:
    verdict = Verdict()
    for index, item in enumerate(items):
        judged = judge_item(index, item, tenant)
        (verdict.valid if isinstance(judged, ValidItem) else verdict.invalid).append(judged)  # type: ignore[arg-type]
    return verdict


def kafka_verdict(value: bytes | None) -> Verdict:
    """A message on the spans topic: items judged with their own tenant_id."""
    if value is None:
        return Verdict(rejected_whole="null value (tombstone)")
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return Verdict(rejected_whole=f"not JSON: {exc}")
    if isinstance(decoded, dict):
        decoded = [decoded]
    if not isinstance(decoded, list):
        return Verdict(rejected_whole=f"a JSON {type(decoded).__name__}, not an array of spans")
    return _judge_all(decoded, None)


def http_verdict(path: str, body: bytes, content_type: str, tenant: str) -> Verdict:
    """A body POSTed with ``tenant``'s key; ``rejected_whole`` means the receiver must answer 400."""
    if path == "/v1/traces":
        try:
            items: list[Any] = decode_otlp(body, content_type)
        except ValueError as exc:
            return Verdict(rejected_whole=f"not OTLP: {exc}")
        return _judge_all(items, tenant)
    if "ndjson" in content_type:
        items = []
        for number, line in enumerate(body.splitlines(), start=1):
            if line.strip():
                try:
                    items.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    return Verdict(rejected_whole=f"NDJSON line {number} is not JSON: {exc}")
    else:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return Verdict(rejected_whole=f"not JSON: {exc}")
        items = decoded if isinstance(decoded, list) else [decoded]
    if not items:
        return Verdict(rejected_whole="no spans in the body")
    return _judge_all(items, tenant)
