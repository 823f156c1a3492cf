"""Bad input, property-based (hypothesis): malformed JSON, wrong types, missing fields, negative
or huge token counts, NaN/inf, enormous strings and attribute maps, invalid UTF-8, deep nesting,
oversized bodies and OTLP protobuf garbage, thrown at the worker's batch path and at the
receiver over real HTTP (publishing to a real tansu broker).

The oracle is the single-span model: an item is valid iff ``Span.model_validate`` accepts it.
Expected everywhere: valid items stored/accepted exactly, every invalid item or undecodable
message dead-lettered with a reason, no crash, no 5xx. Examples are derandomized (CI budget,
reproducible); the counts tried and their outcomes are printed at the end of the module.
"""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from spanline.contract.schema import Span
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch
from tests.support.receiver import Receiver, receiver_on

KEY = "key-acme-bad-input"
MAX_BODY = 256 * 1024
PROPERTY = settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TALLY: Counter[str] = Counter()

# --- the inputs


def valid_span(n: int) -> dict[str, Any]:
    return {
        "span_id": f"s{n}",
        "trace_id": f"t{n}",
        "service": "bad-input",
        "kind": "llm",
        "provider": "openai",
        "model_requested": "gpt-4o",
        "start_time": "2026-11-22T10:00:00Z",
        "duration_ms": 120.0,
        "input_tokens": 100,
        "output_tokens": 20,
        "attributes": {"k": "v"},
    }


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


FIELDS = [*sorted(Span.model_fields), "user_id", "not_a_field"]
WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([-1, 0, 2**31, 2**32, 100_000_000, 100_000_001, 2**63, -(2**63)]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.just("x" * 70_000),
    st.just("2026-13-45T99:99:99Z"),
    st.just("\u0000\ud7ff\U0010ffff"),
    st.sampled_from(
        [
            "1969-12-31T23:59:59.999Z",
            "2100-01-01T00:00:00Z",
            "2099-12-31T23:59:59.999Z",
            1e12,
            1.0000001e12,
            86_400_000.0,
            4_102_444_800,
        ]
    ),  # the edges of the storable ranges
    st.lists(st.one_of(st.text(max_size=8), st.integers()), max_size=6),
    st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=8), st.integers(), st.none()), max_size=6),
    st.just({f"attr{i}": "v" for i in range(300)}),
    st.just({"k": "v" * 5000}),
    st.just(nested(200)),
    st.just({"a": {"b": {"c": {}}}}),  # deeper: RAW_GARBAGE (orjson writes 254 levels)
)


@st.composite
def mutated_span(draw: st.DrawFn) -> Any:
    """A valid span with some fields set to odd values and some required ones removed, or not an object."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=3), st.none()))
    span = valid_span(draw(st.integers(0, 10**6)))
    for name, value in draw(st.lists(st.tuples(st.sampled_from(FIELDS), WEIRD), max_size=3)):
        span[name] = value
    for name in draw(st.lists(st.sampled_from(sorted(span)), max_size=2)):
        span.pop(name, None)
    return span


RAW_GARBAGE = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"",
            b"{",
            b"[",
            b"null",
            b"42",
            b'"span"',
            b"[1e999]",
            b'[{"duration_ms": NaN}]',
            b'[{"input_tokens": Infinity}]',
            b'[{"span_id": "\xff\xfe"}]',
            b"\xef\xbb\xbf[]",
            b"[" * 5000 + b"]" * 5000,
            b"[" * 600 + b"]" * 600,
            b'{"span_id": "a", "span_id": "b"}',
            b"[{}]" * 3,
            b'[{"kind": "llm"}, 7, "x", []]',
        ]
    ),
)


def encode(items: list[Any]) -> bytes:
    """JSON as any client may write it: the stdlib also writes integers beyond 64 bits."""
    return json.dumps(items, ensure_ascii=False).encode()


def decodable(value: bytes) -> bool:
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return True


def expected(value: bytes, stamp: bool = False) -> tuple[int, int]:
    """(valid items, dead letters) by the single-span model; ``stamp`` = as the receiver sees them."""
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return 0, 1
    items = [decoded] if isinstance(decoded, dict) else decoded if isinstance(decoded, list) else None
    if items is None:
        return 0, 1
    valid = sum(_model_accepts(item, stamp) for item in items)
    return valid, len(items) - valid


def _model_accepts(item: Any, stamp: bool) -> bool:
    if not isinstance(item, dict):
        return False
    if stamp:
        item = {**item, "tenant_id": "acme"}
        if item.pop("user_id", None) is not None:
            item["user_id_hash"] = "0" * 32
    try:
        Span.model_validate(item)
    except ValidationError:
        return False
    return True


# --- the worker's batch path


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog.load()


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    print("\nbad-input tally: " + ", ".join(f"{name}={count}" for name, count in sorted(TALLY.items())))


@PROPERTY
@given(
    messages=st.lists(
        st.one_of(RAW_GARBAGE, st.lists(mutated_span(), min_size=1, max_size=8).map(encode)), min_size=1, max_size=6
    )
)
def test_the_worker_stores_valid_spans_and_dead_letters_the_rest(catalog: PriceCatalog, messages: list[bytes]) -> None:
    good = orjson.dumps([valid_span(-1), valid_span(-2)])
    values = [good, *messages]
    batch = Batch(0, 0, len(values) - 1, [Message(0, i, v, "test") for i, v in enumerate(values)], replayed=False)

    processed = process_batch(batch, "spans", catalog)

    valid, invalid = map(sum, zip(*(expected(v) for v in values), strict=True))
    stored = 0 if processed.rows is None else len(processed.rows)
    assert stored == valid and {"s-1", "s-2"} <= set(processed.rows["span_id"])
    assert len(processed.dead_letters) == invalid
    for _, letter in processed.dead_letters:
        record = orjson.loads(letter)
        assert record["reason"] and record["dedup_key"].startswith("spans/0/")
    assert processed.table is not None and processed.table.num_rows == stored
    TALLY["worker messages"] += len(values)
    TALLY["worker spans stored"] += stored
    TALLY["worker dead letters"] += invalid


# --- the receiver over real HTTP


@pytest.fixture(scope="module")
def receiver(tansu_kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    with receiver_on(
        tansu_kafka.bootstrap_servers,
        tmp_path_factory.mktemp("bad-input"),
        "bad-spans",
        KEY,
        "bad-input-salt",
        MAX_BODY,
    ) as server:
        yield server


def headers(content_type: str = "application/json", **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}", "Content-Type": content_type, **extra}


@PROPERTY
@given(items=st.lists(mutated_span(), min_size=1, max_size=12))
@pytest.mark.e2e  # a real tansu broker
def test_the_receiver_accepts_valid_items_and_names_each_bad_one(receiver: Receiver, items: list[Any]) -> None:
    body = encode(items)
    status, answer = receiver.post("/v1/spans", body, headers())
    TALLY[f"receiver json {status}"] += 1
    if len(body) > MAX_BODY or not decodable(body):  # e.g. an integer beyond 64 bits: the body is refused whole
        assert status == (413 if len(body) > MAX_BODY else 400), answer[:300]
        return
    valid, invalid = expected(body, stamp=True)
    assert status == (207 if invalid else 200), answer[:500]
    result = orjson.loads(answer)
    assert (result["accepted"], result["rejected"]) == (valid, invalid)
    assert all(error["reason"].startswith(f"[{error['index']}]") for error in result["errors"])


@PROPERTY
@given(
    body=RAW_GARBAGE,
    content_type=st.sampled_from(["application/json", "application/x-ndjson", "text/plain"]),
    gzipped=st.booleans(),
)
@pytest.mark.e2e  # a real tansu broker
def test_garbage_bodies_get_a_4xx_or_per_item_errors_never_a_crash(
    receiver: Receiver, body: bytes, content_type: str, gzipped: bool
) -> None:
    extra = {"Content-Encoding": "gzip"} if gzipped else {}
    status, answer = receiver.post(
        "/v1/spans", gzip.compress(body) if gzipped else body, headers(content_type, **extra)
    )
    TALLY[f"receiver garbage {status}"] += 1
    assert status in (200, 207, 400, 413), (status, answer[:300])
    assert orjson.loads(answer) if status != 413 else True


@PROPERTY
@given(
    body=st.one_of(st.binary(max_size=400), RAW_GARBAGE),
    content_type=st.sampled_from(["application/x-protobuf", "application/json"]),
)
@pytest.mark.e2e  # a real tansu broker
def test_otlp_garbage_is_refused_or_partially_accepted_never_a_crash(
    receiver: Receiver, body: bytes, content_type: str
) -> None:
    status, answer = receiver.post("/v1/traces", body, headers(content_type))
    TALLY[f"receiver otlp {status}"] += 1
    assert status in (200, 400), (status, answer[:300])


@pytest.mark.e2e  # a real tansu broker
def test_oversized_bodies_are_refused_also_when_compressed_or_streamed(receiver: Receiver) -> None:
    big = orjson.dumps([valid_span(i) for i in range(2000)])
    assert len(big) > MAX_BODY
    assert receiver.post("/v1/spans", big, headers())[0] == 413
    bomb = gzip.compress(b" " * (MAX_BODY * 40) + b"[]")  # ~10 MB inflated from ~10 KB
    assert receiver.post("/v1/spans", bomb, headers(**{"Content-Encoding": "gzip"}))[0] == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit must hold while reading
        for _ in range(MAX_BODY // 1024 + 10):
            yield b" " * 1024

    assert receiver.post("/v1/spans", chunks(), headers())[0] == 413  # type: ignore[arg-type]
    assert receiver.post("/v1/spans", orjson.dumps([valid_span(1)]), headers())[0] == 200  # still serving


def test_bad_input_does_not_collapse_the_worker_throughput(catalog: PriceCatalog) -> None:
    """10% invalid spans plus garbage messages cost a second validation pass, not the pipeline."""

    def batch(dirty: bool) -> Batch:
        spans = [valid_span(n) | ({"input_tokens": -1} if dirty and n % 10 == 0 else {}) for n in range(20_000)]
        values = [orjson.dumps(spans[i : i + 500]) for i in range(0, len(spans), 500)]
        values += [b"\xff garbage", b"[" * 600 + b"]" * 600, b"{}", b"[1e999]"] if dirty else []
        return Batch(0, 0, len(values) - 1, [Message(0, i, v, "test") for i, v in enumerate(values)], replayed=False)

    def spans_per_s(sample: Batch) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            process_batch(sample, "spans", catalog)
            best = min(best, time.perf_counter() - started)
        return 20_000 / best

    clean, dirty = spans_per_s(batch(False)), spans_per_s(batch(True))
    print(f"\nworker batch path: clean {clean:,.0f} spans/s, with 10% invalid + garbage {dirty:,.0f} spans/s")
    assert dirty >= 0.4 * clean
