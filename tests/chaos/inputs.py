"""Hypothesis strategies for the chaos suite: what tenant "acme" throws at the pipeline, and the
valid traffic of tenant "globex" it is mixed with.

Two ways in:

* :class:`KafkaInput` — a message produced straight to the spans topic (value, key, headers),
  bypassing the receiver: random bytes, empty and null (tombstone) values, non-JSON, JSON
  scalars, arrays of span-like objects with mutated fields, deep nesting, values up to ~900 KB,
  and a ``spanline-source`` header that is missing, null, not UTF-8 or duplicated;
* :class:`HttpInput` — a body POSTed to ``/v1/spans`` (JSON array, one object or NDJSON) or
  ``/v1/traces`` (OTLP/JSON, or garbage declared as protobuf), with the same mutations.

A *mutated span* is a valid span with one to three fields replaced by a wrong type, an extreme
value (year 2300 or 1800, 10^30 tokens, a 24 h + 1 ms duration), a JSON literal no encoder writes
(``NaN``, ``Infinity``, ``1e400``, ``2**64``, a lone surrogate escape), a very long string, a
10,000-element list, deeply nested arrays, an unknown field or a missing required one. Whether it
is still valid is not decided here: tests/chaos/oracle.py asks the schema.

Strategies build Python values in which :class:`Raw` and :class:`Nested` stand for JSON text that
``orjson`` cannot produce; :func:`render` writes the bytes. Large values are built by repeating
a drawn piece (a character, an item) a drawn number of times, so Hypothesis draws a few choices
instead of a megabyte. :func:`draw_examples` runs Hypothesis' generation phase to draw a corpus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from spanline.contract.schema import CacheLayer, ErrorType, Span, SpanKind

#: Spans are dated in the two hours before the run (well inside the 30-day raw retention).
BASE_TIME = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
#: Largest Kafka message value or HTTP body generated (brokers take 1 MiB messages).
MAX_BYTES = 900_000
SOURCE_HEADER = "spanline-source"


# --- the inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaInput:
    """One message for the spans topic; ``label`` names the generator branch that made it."""

    value: bytes | None
    key: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    label: str
    tenant: str = "acme"

    def __repr__(self) -> str:  # never dump 900 KB into a report
        size = "null" if self.value is None else f"{len(self.value):,} B"
        return f"KafkaInput({self.label}, {size}, headers={_short(self.headers)})"


@dataclass(frozen=True)
class HttpInput:
    """One request body for the receiver, sent with ``tenant``'s API key."""

    path: str
    body: bytes
    content_type: str
    label: str
    tenant: str = "acme"

    def __repr__(self) -> str:
        return f"HttpInput({self.tenant} {self.path} {self.content_type}, {self.label}, {len(self.body):,} B)"


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


# --- JSON text no encoder writes -------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text written verbatim: NaN, Infinity, 1e400, 2**64, "\\ud800", ..."""

    text: str


@dataclass(frozen=True)
class Nested:
    """``depth`` arrays (or objects) around ``leaf``, written without recursion."""

    depth: int
    leaf: Any
    objects: bool = False


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


#: A mutation value meaning "remove the field".
DELETE = _Delete()


def render(value: Any) -> bytes:
    """JSON text of ``value``; Raw and Nested parts are written as they say."""
    if isinstance(value, Raw):
        return value.text.encode("utf-8", "surrogatepass")
    if isinstance(value, Nested):
        opening, closing = (b'{"n":', b"}") if value.objects else (b"[", b"]")
        return opening * value.depth + render(value.leaf) + closing * value.depth
    if isinstance(value, dict):
        return b"{" + b",".join(orjson.dumps(str(k)) + b":" + render(v) for k, v in value.items()) + b"}"
    if isinstance(value, list | tuple):
        if value and all(type(item) is type(value[0]) for item in value) and isinstance(value[0], str | int | float):
            try:  # long homogeneous lists (10k elements) in one call
                return orjson.dumps(list(value))
            except TypeError:
                pass
        return b"[" + b",".join(render(item) for item in value) + b"]"
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value).encode()
    return orjson.dumps(value)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- valid spans -----------------------------------------------------------------------------

KINDS = tuple(kind.value for kind in SpanKind)
ERROR_TYPES = tuple(error.value for error in ErrorType)
CACHE_LAYERS = tuple(layer.value for layer in CacheLayer)
#: Priced in genai-prices, plus one model no catalog knows (priced 0, cost_known false).
MODELS = (
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-sonnet"),
    ("google", "gemini-1.5-flash"),
    ("openai", "o3-mini"),
    ("acme-ai", "house-model-7b"),
)
SERVICES = ("chat-api", "search", "agent-runner", "billing-bot", "ünïcode-svc")

span_ids = st.uuids().map(lambda u: u.hex[:16])
trace_ids = st.uuids().map(lambda u: u.hex)
#: Short labels: any Unicode (no surrogates), control characters included; the schema strips whitespace.
labels = st.text(max_size=24)
small_attributes = st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=30), max_size=6)


@st.composite
def valid_spans(draw: Any, tenant: str | None = None) -> dict[str, Any]:
    """A span the schema accepts, by construction (tokens parts within wholes, aligned lists, ...)."""
    kind = draw(st.sampled_from(KINDS))
    provider, model = draw(st.sampled_from(MODELS))
    input_tokens = draw(st.integers(0, 60_000))
    cache_read = draw(st.integers(0, input_tokens))
    cache_write = draw(st.integers(0, input_tokens - cache_read))
    output_tokens = draw(st.integers(0, 6_000))
    start = BASE_TIME + timedelta(milliseconds=draw(st.integers(0, 2 * 3_600_000 - 1)))
    duration_ms = draw(st.integers(0, 180_000)) / 10  # 0.1 ms resolution
    span: dict[str, Any] = {
        "span_id": draw(span_ids),
        "trace_id": draw(trace_ids),
        "service": draw(st.sampled_from(SERVICES)),
        "feature": draw(st.sampled_from(("support-chat", "search", "summaries", ""))),
        "kind": kind,
        "name": draw(labels),
        "start_time": iso(start),
        "provider": provider,
        "model_requested": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "reasoning_tokens": draw(st.integers(0, output_tokens)),
    }
    if draw(st.booleans()):
        span["duration_ms"] = duration_ms
    else:  # the end instead of the duration, whole milliseconds so the two agree exactly
        span["end_time"] = iso(start + timedelta(milliseconds=int(duration_ms)))
    if draw(st.integers(0, 4)) == 0:
        span.update(
            status="error",
            error_type=draw(st.sampled_from(ERROR_TYPES)),
            http_status=draw(st.sampled_from((429, 500, 503, 400))),
        )
    if draw(st.booleans()):
        span["ttft_ms"] = draw(st.integers(0, int(duration_ms * 10))) / 10
    if draw(st.booleans()):
        span["attributes"] = draw(small_attributes)
    if kind == "retrieval" and draw(st.booleans()):
        docs = draw(st.lists(st.text(min_size=1, max_size=10), max_size=8))
        span["retrieval_doc_ids"] = docs
        span["retrieval_scores"] = [draw(st.floats(0, 1)) for _ in docs]
    if kind == "cache":
        span.update(
            cache_hit=draw(st.booleans()),
            cache_layer=draw(st.sampled_from(CACHE_LAYERS)),
            cache_similarity=draw(st.floats(0, 1)),
        )
    if kind == "eval":
        span.update(
            eval_name=draw(st.sampled_from(("faithfulness", "recall@5", "tone"))),
            eval_score=draw(st.floats(-1e6, 1e6)),
            eval_passed=draw(st.booleans()),
        )
    if draw(st.integers(0, 3)) == 0:
        span["attempt"] = draw(st.integers(0, 1000))
    if tenant is not None:
        span["tenant_id"] = tenant
    return span


# --- field mutations -------------------------------------------------------------------------

TIME_FIELDS = ("start_time", "end_time")
NUMBER_FIELDS = (
    "duration_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "http_status",
    "attempt",
    "retry_after_s",
    "cache_similarity",
    "eval_score",
    "cost_usd_reported",
    "context_window",
    "top_k",
)
#: Text fields (not ``content``: the receiver redacts it, so its HTTP fate is not the schema's alone).
TEXT_FIELDS = (
    "span_id",
    "trace_id",
    "parent_span_id",
    "tenant_id",
    "service",
    "feature",
    "environment",
    "name",
    "provider",
    "model_requested",
    "model_response",
    "route",
    "prompt_id",
    "session_id",
    "finish_reason",
)
ENUM_FIELDS = ("kind", "status", "error_type", "cache_layer", "routing_reason", "schema_version")
LIST_FIELDS = ("retrieval_doc_ids", "retrieval_scores")
REQUIRED_FIELDS = ("span_id", "trace_id", "service", "kind", "start_time")
ALL_FIELDS = tuple(Span.model_fields)

#: JSON literals outside what orjson writes: NaN/Infinity, overflowing numbers, surrogate escapes.
json_literals = st.sampled_from(
    [
        Raw("NaN"),
        Raw("Infinity"),
        Raw("-Infinity"),
        Raw("1e400"),
        Raw("-1e400"),
        Raw("18446744073709551616"),
        Raw(str(10**40)),
        Raw("-0"),
        Raw("1E+2"),
        Raw('"\\ud800"'),
        Raw('"a\\udfffb"'),
        Raw('"\\ud83d\\ude00"'),
        Raw('"\\u0000"'),
        Raw("0.000000000000000000000000000001"),
    ]
)
giant_ints = st.one_of(
    st.sampled_from([2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), 2**64 - 1, 2**64, 10**30, 100_000_001]),
    st.integers(min_value=2**64, max_value=2**200),  # rendered as digits: orjson.loads makes them floats
)
extreme_numbers = st.one_of(
    giant_ints,
    json_literals,
    st.sampled_from([0, -1, -0.0, 86_400_000, 86_400_000.001, 1e308, -1e308, 5e-324, 1.7976931348623157e308]),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["12", "1e3", " 7 ", "0x10", True, False]),  # lax-mode coercions and near misses
)
extreme_times = st.one_of(
    st.sampled_from(
        [
            "2300-01-01T00:00:00Z",
            "2300-06-15T12:00:00+02:00",
            "1800-01-01T00:00:00Z",
            "1800-12-31T23:59:59.999Z",
            "2299-12-31T23:59:59.999Z",
            "2262-04-11T23:47:16.854Z",
            "2106-02-07T06:28:16Z",
            "1900-01-01T00:00:00Z",
            "1677-09-21T00:12:43Z",
            "1969-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "24:00",
            "now",
            "",
            "2026-11-20",
            "2026-11-20T10:00:00+25:00",
        ]
    ),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(lambda d: d.isoformat() + "Z"),
    st.integers(min_value=-(2**40), max_value=2**40),  # unix seconds or milliseconds
    extreme_numbers,
)
wrong_types = st.one_of(  # infinities and NaN come as Raw literals (orjson would write them as null)
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
)
#: Strings with surrounding whitespace: "  x " is stored as "x", "   " becomes empty.
padded_strings = st.builds(
    lambda pad, core, tail: pad + core + tail,
    st.text(alphabet=" \t\r\n\u00a0\u2003\u3000", max_size=3),
    st.text(max_size=8),
    st.text(alphabet=" \t\u2028", max_size=2),
)


def repeated_text(lengths: SearchStrategy[int]) -> SearchStrategy[str]:
    """One drawn character (1-4 UTF-8 bytes) repeated a drawn number of times."""
    return st.builds(lambda char, n: char * n, st.characters(exclude_categories=["Cs"]), lengths)


#: 129 (past an id's 128), 257 (past a label's 256), 4,097 (past an attribute value's 4,096), 65,537 (content).
long_strings = repeated_text(st.sampled_from([129, 257, 4_097, 65_537]))
huge_strings = repeated_text(st.integers(150_000, 220_000))  # ≤ 880 KB even as 4-byte characters
#: 10,000 is the schema's limit for retrieval lists; 10,001 is one past it.
ten_k_lists = st.builds(
    lambda item, n: [item] * n,
    st.one_of(st.text(max_size=6), st.floats(0, 1), st.integers(), st.none()),
    st.sampled_from([10_000, 10_001]),
)
deep_nesting = st.builds(
    Nested,
    st.sampled_from([8, 254, 255, 1_023, 1_024, 1_025, 5_000]),
    st.one_of(st.integers(), st.just({}), st.text(max_size=3)),
    st.booleans(),
)
oversized_attributes = st.one_of(
    st.builds(lambda n: {f"k{i}": "v" for i in range(n)}, st.sampled_from([256, 257, 1_000])),
    st.builds(lambda value: {"big": value}, long_strings),
    st.dictionaries(st.text(max_size=5), wrong_types, min_size=1, max_size=3),
    st.builds(lambda key: {key: "v"}, repeated_text(st.just(257))),
)
unknown_fields = st.text(min_size=1, max_size=16).filter(
    lambda name: name not in Span.model_fields and name != "user_id"
)  # the receiver hashes user_id

mutations: SearchStrategy[tuple[str, Any]] = st.one_of(
    st.tuples(st.sampled_from(TIME_FIELDS), extreme_times),
    st.tuples(st.sampled_from(NUMBER_FIELDS), extreme_numbers),
    st.tuples(st.sampled_from(ALL_FIELDS), wrong_types),
    st.tuples(st.sampled_from(TEXT_FIELDS), st.one_of(long_strings, padded_strings, json_literals)),
    st.tuples(
        st.sampled_from(ENUM_FIELDS), st.one_of(st.text(max_size=10), st.sampled_from(["LLM", " llm ", "Error"]))
    ),
    st.tuples(st.sampled_from(LIST_FIELDS), st.one_of(ten_k_lists, st.lists(wrong_types, max_size=4))),
    st.tuples(st.just("attributes"), oversized_attributes),
    st.tuples(st.sampled_from(ALL_FIELDS), deep_nesting),
    st.tuples(unknown_fields, wrong_types),
    st.tuples(st.sampled_from(REQUIRED_FIELDS), st.just(DELETE)),
)


def mutate(span: dict[str, Any], changes: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(span)
    for field, value in changes:
        if value is DELETE:
            out.pop(field, None)
        else:
            out[field] = value
    return out


def mutated_spans(tenant: str | None = "acme") -> SearchStrategy[dict[str, Any]]:
    """A valid span with one to three fields mutated (it may still be valid: the oracle decides)."""
    return st.builds(mutate, valid_spans(tenant), st.lists(mutations, min_size=1, max_size=3))


def spans_mutated_by(changes: SearchStrategy[tuple[str, Any]], tenant: str | None = "acme") -> SearchStrategy[bytes]:
    """Arrays of one to six spans, each with one or two mutations of one family, so that every run
    meets every family (years 2300 and 1800, NaN, 2**64, ...) however the mixed branches fall."""
    return st.lists(
        st.builds(mutate, valid_spans(tenant), st.lists(changes, min_size=1, max_size=2)), min_size=1, max_size=6
    ).map(render)


time_mutations = st.tuples(st.sampled_from(TIME_FIELDS), extreme_times)
number_mutations = st.tuples(st.sampled_from(NUMBER_FIELDS), extreme_numbers)
size_mutations = st.one_of(
    st.tuples(st.sampled_from(TEXT_FIELDS), long_strings),
    st.tuples(st.sampled_from(LIST_FIELDS), ten_k_lists),
    st.tuples(st.just("attributes"), oversized_attributes),
)

#: Array elements that are not span objects at all.
non_objects = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10), st.just([]), json_literals)


def span_like_items(tenant: str | None = "acme") -> SearchStrategy[Any]:
    """What an array of spans from acme holds: mostly mutated spans, some valid ones, some junk."""
    return st.one_of(
        mutated_spans(tenant),
        mutated_spans(tenant),
        valid_spans(tenant),
        non_objects,
        st.just({}),
        st.just({"kind": "llm"}),
    )


# --- Kafka messages --------------------------------------------------------------------------


def random_bytes(sizes: SearchStrategy[int]) -> SearchStrategy[bytes]:
    return st.builds(lambda rnd, n: rnd.randbytes(n), st.randoms(use_true_random=True), sizes)


not_json = st.one_of(
    st.sampled_from(
        [
            b"{",
            b"[",
            b"nul",
            b"[1,]",
            b"{'kind': 'llm'}",
            b"\xef\xbb\xbf[]",
            b"[1] trailing",
            b"NaN",
            b"[NaN]",
            b"\x00",
            b"\xff\xfe[\x00]\x00",
            b'[{"span_id": "x", "kind": "llm"',
            b"[" + b"{}," * 1000,
        ]
    ),
    st.text(max_size=40).map(str.encode),  # now and then valid JSON by accident; the oracle knows
    st.builds(lambda span: render([span]).decode().encode("utf-16"), valid_spans("acme")),  # JSON in UTF-16
    st.builds(lambda span, cut: render([span])[:cut], valid_spans("acme"), st.integers(1, 200)),  # truncated
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    json_literals,
).map(render)


def span_arrays(tenant: str | None = "acme", max_size: int = 16) -> SearchStrategy[bytes]:
    return st.lists(span_like_items(tenant), max_size=max_size).map(render)


source_headers: SearchStrategy[tuple[tuple[str, bytes | None], ...]] = st.one_of(
    st.just(((SOURCE_HEADER, b"sdk"),)),
    st.just(()),  # missing
    st.just(((SOURCE_HEADER, None),)),  # null value
    st.binary(min_size=1, max_size=8).filter(lambda b: not _utf8(b)).map(lambda b: ((SOURCE_HEADER, b),)),
    st.just(((SOURCE_HEADER, b"http"), (SOURCE_HEADER, b"sdk"))),  # duplicated
    st.just(((SOURCE_HEADER, b"sdk"), (SOURCE_HEADER, None))),  # duplicated, the last one null
    st.tuples(st.tuples(st.text(max_size=10), st.one_of(st.none(), st.binary(max_size=20)))),  # unrelated header
    st.just(((SOURCE_HEADER, b""),)),
)
message_keys = st.one_of(st.none(), st.binary(max_size=40), trace_ids.map(str.encode))


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


#: Kafka message values by kind; the kind becomes the input's label.
KAFKA_VALUES: dict[str, SearchStrategy[bytes | None]] = {
    "span-array": span_arrays(),
    "single-span-object": st.one_of(mutated_spans(), valid_spans("acme")).map(render),
    "empty-array": st.just(b"[]"),
    "json-scalar": json_scalars,
    "not-json": not_json,
    "random-bytes": random_bytes(st.integers(0, 2_000)),
    "empty-value": st.just(b""),
    "tombstone": st.none(),
    "deep-nesting": deep_nesting.map(render),
    "spans-without-tenant": span_arrays(tenant=None, max_size=4),
    "extreme-times": spans_mutated_by(time_mutations),
    "extreme-numbers": spans_mutated_by(number_mutations),
    "long-strings-and-lists": spans_mutated_by(size_mutations),
}
#: The large ones, drawn into a corpus of their own so a run holds a handful, not dozens.
HEAVY_KAFKA_VALUES: dict[str, SearchStrategy[bytes | None]] = {
    "random-bytes-900k": random_bytes(st.integers(500_000, MAX_BYTES)),
    "huge-string-field": st.builds(
        lambda span, field, text: render([mutate(span, [(field, text)])]),
        valid_spans("acme"),
        st.sampled_from(("service", "name", "span_id", "content")),
        huge_strings,
    ),
    "10k-junk-items-and-valid-spans": st.builds(
        lambda junk, n, spans: render([junk] * n + spans),
        non_objects,
        st.just(10_000),
        st.lists(valid_spans("acme"), min_size=1, max_size=5),
    ),
    "10k-retrieval-docs": st.builds(
        lambda span, n: render(
            [
                {
                    **span,
                    "kind": "retrieval",
                    "retrieval_doc_ids": [f"doc{i}" for i in range(n)],
                    "retrieval_scores": [0.5] * n,
                }
            ]
        ),
        valid_spans("acme"),
        st.sampled_from([10_000, 10_001]),
    ),
    "deep-nesting-5000": st.builds(lambda leaf: render(Nested(5_000, leaf)), st.integers()),
    "whitespace-padded-valid-array": st.builds(  # valid JSON, mostly insignificant whitespace
        lambda spans, pad: b" \n\t" * pad + render(spans),
        st.lists(valid_spans("acme"), min_size=1, max_size=4),
        st.integers(200_000, (MAX_BYTES - 20_000) // 3),
    ),
    "many-valid-spans": st.builds(
        lambda span, n: render([{**span, "span_id": f"{span['span_id']}-{i}"} for i in range(n)]),
        valid_spans("acme"),
        st.integers(500, 1_500),
    ),
}


@st.composite
def kafka_messages(draw: Any, values: dict[str, SearchStrategy[bytes | None]] = KAFKA_VALUES) -> KafkaInput:
    """An adversarial message from acme: a value of a drawn kind, a key, headers."""
    kind = draw(st.sampled_from(sorted(values)))
    value = _capped(draw(values[kind]))
    key = draw(message_keys)
    if value is None and key is None:
        key = b"tombstone"  # a Kafka record needs a key or a value
    return KafkaInput(value, key, draw(source_headers), kind)


def _capped(value: bytes | None) -> bytes | None:
    """Values past MAX_BYTES are cut (still a fine adversarial input: truncated JSON)."""
    return value if value is None or len(value) <= MAX_BYTES else value[:MAX_BYTES]


# --- HTTP bodies -----------------------------------------------------------------------------


def ndjson(items: list[Any], junk_line: bytes | None, crlf: bool) -> bytes:
    lines = [render(item) for item in items]
    if junk_line is not None:
        lines.insert(len(lines) // 2, junk_line)
    return (b"\r\n" if crlf else b"\n").join([*lines, b""])


def kv(key: str, value: Any) -> dict[str, Any]:
    """An OTLP/JSON KeyValue; ints are int64 decimal strings, as the protobuf JSON mapping writes."""
    any_value: dict[str, Any]
    if isinstance(value, bool):
        any_value = {"boolValue": value}
    elif isinstance(value, int):
        any_value = {"intValue": str(value)}
    elif isinstance(value, float):
        any_value = {"doubleValue": value}
    else:
        any_value = {"stringValue": value}
    return {"key": key, "value": any_value}


def _unix_nanos(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def otlp_span(span: dict[str, Any]) -> dict[str, Any]:
    """A canonical valid span as an OTLP/JSON span with GenAI attributes."""
    start_ns = _unix_nanos(span["start_time"])
    end_ns = (
        _unix_nanos(span["end_time"]) if "end_time" in span else start_ns + int(span.get("duration_ms", 0) * 1_000_000)
    )
    operation = {"llm": "chat", "embedding": "embeddings", "tool": "execute_tool", "retrieval": "retrieval"}
    attributes = [
        kv("gen_ai.provider.name", span["provider"]),
        kv("gen_ai.request.model", span["model_requested"]),
        kv("gen_ai.usage.input_tokens", span["input_tokens"]),
        kv("gen_ai.usage.output_tokens", span["output_tokens"]),
        kv("gen_ai.usage.cache_read.input_tokens", span["cache_read_tokens"]),
        kv("spanline.kind", span["kind"]),
    ]
    if span["kind"] in operation:
        attributes.append(kv("gen_ai.operation.name", operation[span["kind"]]))
    attributes += [
        kv(key, value)
        for key, value in span.get("attributes", {}).items()
        if not key.startswith(("gen_ai.", "spanline.", "user.", "enduser.", "error.", "http.", "server.", "app."))
    ]
    return {
        "traceId": span["trace_id"],
        "spanId": span["span_id"],
        "name": span["name"],
        "kind": 3,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(end_ns),
        "status": {"code": 2 if span.get("status") == "error" else 1},
        "attributes": attributes,
    }


def otlp_request(spans: list[dict[str, Any]], service: str) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [kv("service.name", service)]},
                "scopeSpans": [{"scope": {"name": "chaos", "version": "1"}, "spans": spans}],
            }
        ]
    }


#: OTLP-level mutations: bad ids and times reject the whole body (400), odd attribute values
#: only their span.
otlp_mutations: SearchStrategy[tuple[str, Any]] = st.one_of(
    st.tuples(
        st.sampled_from(["traceId", "spanId", "parentSpanId"]),
        st.one_of(st.sampled_from(["", "zz", "0" * 31, "0" * 33, "G" * 32]), wrong_types),
    ),
    st.tuples(
        st.sampled_from(["startTimeUnixNano", "endTimeUnixNano"]),
        st.one_of(
            st.sampled_from(
                [
                    "0",
                    "-5",
                    "abc",
                    str(2**63),
                    str(2**63 - 1),
                    "253402300800000000000",
                    "10413792000000000000",
                    "-5364662400000000000",
                    1e30,
                ]
            ),
            st.integers(),
        ),
    ),
    st.tuples(
        st.just("attribute"),
        st.tuples(
            st.sampled_from(
                [
                    "gen_ai.usage.input_tokens",
                    "gen_ai.usage.output_tokens",
                    "gen_ai.response.time_to_first_chunk",
                    "spanline.kind",
                    "spanline.attempt",
                    "spanline.ttft_ms",
                    "spanline.tenant_id",
                    "http.response.status_code",
                    "gen_ai.retrieval.documents",
                    "x.custom",
                ]
            ),
            st.one_of(
                st.sampled_from(
                    [
                        {"intValue": "-5"},
                        {"intValue": str(2**63)},
                        {"intValue": "1e9999"},
                        {"doubleValue": "NaN"},
                        {"doubleValue": "Infinity"},
                        {"boolValue": "yes"},
                        {"stringValue": 12},
                        {"bytesValue": "!!"},
                        {"kvlistValue": {"values": [{"key": "a", "value": {"intValue": "1"}}]}},
                        {"weird": 1},
                        {},
                    ]
                ),
                st.builds(lambda text: {"stringValue": text}, long_strings),
                st.builds(lambda n: {"arrayValue": {"values": [{"intValue": "1"}] * n}}, st.sampled_from([1, 10_000])),
            ),
        ),
    ),
    st.tuples(st.just("many-attributes"), st.sampled_from([257, 600])),
    st.tuples(
        st.just("status"),
        st.sampled_from([{"code": "STATUS_CODE_ERROR"}, {"code": 7}, {"code": "nope"}, [], {"message": 5}]),
    ),
)


def mutate_otlp(span: dict[str, Any], changes: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(span)
    for field, value in changes:
        if field == "attribute":
            key, any_value = value
            out["attributes"] = [a for a in out["attributes"] if a["key"] != key] + [{"key": key, "value": any_value}]
        elif field == "many-attributes":
            out["attributes"] = out["attributes"] + [kv(f"extra.{i}", "x") for i in range(value)]
        else:
            out[field] = value
    return out


@st.composite
def otlp_bodies(draw: Any) -> bytes:
    spans = draw(
        st.lists(
            st.one_of(
                st.builds(mutate_otlp, valid_spans().map(otlp_span), st.lists(otlp_mutations, min_size=1, max_size=2)),
                valid_spans().map(otlp_span),
            ),
            max_size=8,
        )
    )
    return render(otlp_request(spans, draw(st.sampled_from(SERVICES))))


#: HTTP bodies by kind: (strategy of the body, path, content type).
HTTP_BODIES: dict[str, tuple[SearchStrategy[bytes], str, str]] = {
    "canonical-array": (span_arrays(max_size=12), "/v1/spans", "application/json"),
    "canonical-object": (st.one_of(mutated_spans(), valid_spans()).map(render), "/v1/spans", "application/json"),
    "canonical-non-objects": (
        st.lists(non_objects, min_size=1, max_size=4).map(render),
        "/v1/spans",
        "application/json",
    ),
    "ndjson": (
        st.builds(ndjson, st.lists(span_like_items(), max_size=10), st.none(), st.booleans()),
        "/v1/spans",
        "application/x-ndjson",
    ),
    "ndjson-with-junk-line": (
        st.builds(ndjson, st.lists(span_like_items(), max_size=6), not_json, st.booleans()),
        "/v1/spans",
        "application/x-ndjson",
    ),
    "canonical-extreme-times": (spans_mutated_by(time_mutations), "/v1/spans", "application/json"),
    "canonical-extreme-numbers": (spans_mutated_by(number_mutations), "/v1/spans", "application/json"),
    "otlp-json": (otlp_bodies(), "/v1/traces", "application/json"),
    "not-json": (not_json, "/v1/spans", "application/json"),
    "json-scalar": (json_scalars, "/v1/spans", "application/json"),
    "empty-body": (st.just(b""), "/v1/spans", "application/json"),
    "otlp-not-json": (
        st.one_of(not_json, json_scalars, st.just(b"{}"), st.just(b'{"resourceSpans": 5}')),
        "/v1/traces",
        "application/json",
    ),
    "otlp-protobuf-garbage": (random_bytes(st.integers(0, 300)), "/v1/traces", "application/x-protobuf"),
}
HEAVY_HTTP_BODIES: dict[str, tuple[SearchStrategy[bytes], str, str]] = {
    "random-bytes-900k": (random_bytes(st.integers(500_000, MAX_BYTES)), "/v1/spans", "application/json"),
    "protobuf-garbage-900k": (random_bytes(st.integers(500_000, MAX_BYTES)), "/v1/traces", "application/x-protobuf"),
    "10k-junk-items-and-valid-spans": (
        st.builds(
            lambda junk, spans: render([junk] * 10_000 + spans),
            non_objects,
            st.lists(valid_spans(), min_size=1, max_size=5),
        ),
        "/v1/spans",
        "application/json",
    ),
    "huge-attribute-value": (
        st.builds(
            lambda span, text: render([mutate(span, [("attributes", {"dump": text})]), span]),
            valid_spans(),
            huge_strings,
        ),
        "/v1/spans",
        "application/json",
    ),
    "ndjson-2000-lines": (
        st.builds(
            lambda span, n, junk: ndjson(
                [{**span, "span_id": f"{span['span_id']}-{i}"} for i in range(n)], junk, False
            ),
            valid_spans(),
            st.integers(1_000, 2_000),
            st.one_of(st.none(), not_json),
        ),
        "/v1/spans",
        "application/x-ndjson",
    ),
}


@st.composite
def http_bodies(draw: Any, kinds: dict[str, tuple[SearchStrategy[bytes], str, str]] = HTTP_BODIES) -> HttpInput:
    """An adversarial body from acme for one of the receiver's endpoints."""
    kind = draw(st.sampled_from(sorted(kinds)))
    strategy, path, content_type = kinds[kind]
    body = draw(strategy)
    return HttpInput(path, body[:MAX_BYTES], content_type, kind)


# --- globex: valid traffic, through every door ----------------------------------------------


def globex_inputs(door: str) -> SearchStrategy[KafkaInput | HttpInput]:
    """Batches of valid globex spans through one door: "kafka" (produced as the SDK does),
    "http-json", "http-ndjson" or "otlp-json" (POSTed with globex's key)."""
    batches = st.lists(valid_spans("globex"), min_size=1, max_size=25)
    if door == "kafka":
        return batches.map(
            lambda spans: KafkaInput(
                render(spans),
                spans[0]["trace_id"].encode(),
                ((SOURCE_HEADER, b"sdk"),),
                f"globex-valid[{len(spans)}]",
                tenant="globex",
            )
        )
    if door == "http-json":
        return batches.map(
            lambda spans: HttpInput(
                "/v1/spans", render(spans), "application/json", f"globex-valid[{len(spans)}]", "globex"
            )
        )
    if door == "http-ndjson":
        return batches.map(
            lambda spans: HttpInput(
                "/v1/spans",
                ndjson(spans, None, False),
                "application/x-ndjson",
                f"globex-valid-ndjson[{len(spans)}]",
                "globex",
            )
        )
    assert door == "otlp-json", door
    return st.builds(
        lambda spans, service: HttpInput(
            "/v1/traces",
            render(otlp_request([otlp_span(span) for span in spans], service)),
            "application/json",
            f"globex-valid-otlp[{len(spans)}]",
            "globex",
        ),
        batches,
        st.sampled_from(SERVICES),
    )


# --- drawing a corpus ------------------------------------------------------------------------


def draw_examples(strategy: SearchStrategy[Any], count: int, random_seed: int) -> list[Any]:
    """``count`` values from Hypothesis' generation phase (seeded, no database, no shrinking).

    A stack costs seconds to start, so instead of one stack per Hypothesis example the test
    draws whole corpora here and pushes them through one stack. Hypothesis' first example is
    always its simplest one; the rest are its usual mix of sizes and edge cases.
    """
    drawn: list[Any] = []

    @seed(random_seed)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        derandomize=False,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn


def draw_each_kind(
    make: Callable[[dict[str, Any]], SearchStrategy[Any]], kinds: dict[str, Any], per_kind: int, random_seed: int
) -> list[Any]:
    """``per_kind`` inputs of every kind, so each generator branch runs every time (one Hypothesis
    corpus over all kinds leans on a few). Hypothesis' first example of each is dropped: it is
    always the simplest one (``[]``, a 500,000-byte value of zeros, ...)."""
    drawn: list[Any] = []
    for number, kind in enumerate(sorted(kinds)):
        drawn += draw_examples(make({kind: kinds[kind]}), per_kind + 1, random_seed + 1_000 * number)[1:]
    return drawn
