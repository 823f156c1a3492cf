"""The worker's fast path (msgspec records + column checks) agrees with the slow path (orjson +
pydantic) on every message: the same valid rows, every column, and the same dead letters.

The reference runs every message through the slow path alone (streams.process._slow_piece, the
pre-fast-path worker); the worker's ``decode_batch`` takes what the fast path accepts and hands
the rest to the slow path. Items are simulator spans with fields swapped for generated values:
unicode and whitespace-edged text, lone surrogates, huge ints, floats out of range, times in
every form (offsets, naive, long fractions, days that do not exist, outside the storable
range), missing required fields, extra fields, nulls, wrong types and broken cross-field rules.
Field strategies follow the model's field kinds, so a field added to the model is generated too.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field

from spanline.contract.column_checks import refused
from spanline.contract.columns import dict_columns, record_columns
from spanline.contract.records import FIELD_KINDS, FIELDS, SpanRecord, _convert, decode_records
from spanline.contract.schema import Span
from spanline.contract.validation import validate_items
from spanline.simulator.workload import WorkloadConfig, generate_traces
from spanline.streams.batcher import Batch, Message
from spanline.streams.frame import columns_to_frame
from spanline.streams.process import DeadLetter, _slow_piece, _valid_spans, decode_batch

PROPERTY = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TALLY: Counter[str] = Counter()
BASE = [
    span
    for chunk in generate_traces(WorkloadConfig(start=datetime(2026, 11, 22, tzinfo=UTC), duration_s=30))
    for span in chunk
][:400]

# --- generated values, by the model's field kinds

SPACES = " \t\n\x0b\x0c\r\x1c\x1f\x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000"
TEXT = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.builds(
        lambda s, a, b: a + s + b, st.text(max_size=5), st.sampled_from(["", *SPACES]), st.sampled_from(["", *SPACES])
    ),
    st.sampled_from(["llm", "error", "ok", "cache", "exact", "rate_limited", "canary", "é", "😀", "\x00", "x" * 257]),
)
TIME_FORMS = [
    "2026-11-22T00:00:00Z",
    "2026-11-22T00:00:00.5Z",
    "2026-11-22T00:00:00.123456Z",
    "2026-11-22T00:00:00.1234567Z",
    "2026-11-22T00:00:00.9999999Z",
    "2026-11-22T00:00:00",
    "2026-11-22T00:00:00+05:30",
    "2026-11-22T00:00:00-00:00",
    "2026-11-22T23:59:59.999+23:59",
    "2026-11-22 00:00:00Z",
    "2026-11-22t00:00:00z",
    "2026-02-30T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-11-22T24:00:00Z",
    "1969-12-31T23:59:59.999999Z",
    "1970-01-01T00:00:00Z",
    "1970-01-01T00:30:00+01:00",
    "2099-12-31T23:59:59.999999Z",
    "2099-12-31T20:00:00Z",
    "2100-01-01T00:00:00Z",
    "2100-01-01T00:30:00+01:00",
    "9999-12-31T23:59:59Z",
    "2026-11-22",
    "1700000000",
]
TIMES = st.one_of(
    st.sampled_from(TIME_FORMS),
    st.integers(-(2**40), 2**40),
    st.datetimes(
        min_value=datetime(1960, 1, 1), max_value=datetime(2110, 1, 1), timezones=st.sampled_from([UTC, None])
    ).map(lambda d: d.isoformat().replace("+00:00", "Z")),
)
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([2**63, -(2**63) - 1, 10**30, 1e300, -1e300, 1.5, "12", "true", [], {}, [1], {"a": 1}]),
)


def value_of(name: str) -> st.SearchStrategy[Any]:
    kind = FIELD_KINDS[name]
    plain: st.SearchStrategy[Any]
    if kind.base == "text":
        plain = TEXT
    elif kind.base == "int":
        plain = st.one_of(
            st.integers(-5, 2000), st.integers(0, 2 * 10**8), st.integers(-(2**70), 2**70), st.floats(0, 5000)
        )
    elif kind.base == "float":
        plain = st.one_of(
            st.floats(-1e13, 1e13, allow_nan=False, allow_infinity=False),
            st.floats(0, 2, allow_nan=False),
            st.integers(-(10**13), 10**13),
            st.floats(allow_nan=False, allow_infinity=False),
        )
    elif kind.base == "bool":
        plain = st.one_of(st.booleans(), st.sampled_from([0, 1, "true", "no"]))
    elif kind.base == "time":
        plain = TIMES
    elif kind.base == "list":
        item = TEXT if kind.item == "text" else st.floats(-2e12, 2e12, allow_nan=False, allow_infinity=False)
        plain = st.lists(st.one_of(item, ODD), max_size=4)
    else:
        plain = st.dictionaries(TEXT, st.one_of(TEXT, ODD), max_size=4)
    return st.one_of(plain, plain, plain, ODD)


MISSING = object()
TIME_FIELDS = [name for name, kind in FIELD_KINDS.items() if kind.base == "time"]


@st.composite
def items(draw: st.DrawFn) -> Any:
    span = dict(draw(st.sampled_from(BASE)))
    if draw(st.integers(0, 3)) == 0:  # times take the most care: drawn often
        span[draw(st.sampled_from(TIME_FIELDS))] = draw(TIMES)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([*FIELDS, "unknown_field"]))
        value = draw(st.one_of(value_of(name) if name in FIELD_KINDS else ODD, st.just(MISSING)))
        if value is MISSING:
            span.pop(name, None)
        else:
            span[name] = value
    if draw(st.integers(0, 9)) == 0:  # the cross-field rules, broken on purpose
        rule = draw(st.sampled_from(["cache", "reasoning", "end", "scores", "error", "duration"]))
        if rule == "cache":
            span |= {"input_tokens": 10, "cache_read_tokens": 8, "cache_write_tokens": draw(st.integers(0, 5))}
        elif rule == "reasoning":
            span |= {"output_tokens": 3, "reasoning_tokens": draw(st.integers(2, 4))}
        elif rule == "end":
            span |= {"end_time": draw(TIMES), "duration_ms": draw(st.floats(0, 90_000_000, allow_nan=False))}
        elif rule == "scores":
            span |= {"retrieval_doc_ids": ["a", "b"], "retrieval_scores": draw(st.lists(st.floats(0, 1), max_size=3))}
        elif rule == "error":
            span |= {"status": "ok", "error_type": "timeout"}
        else:
            span.pop("end_time", None)
            span |= {"start_time": "2099-12-31T12:00:00Z", "duration_ms": draw(st.floats(0, 86_400_000))}
    return span


def encoded(value: Any) -> bytes:
    """JSON as a client may send it: the stdlib escapes lone surrogates, writes NaN/Infinity."""
    return json.dumps(value, ensure_ascii=draw_ascii(value)).encode("utf-8", "surrogatepass")


def draw_ascii(value: Any) -> bool:
    return len(str(value)) % 2 == 0  # both spellings of non-ASCII text, deterministically


MESSAGES = st.one_of(
    st.lists(items(), min_size=1, max_size=5).map(encoded),
    st.lists(items(), min_size=1, max_size=5).map(encoded),
    items().map(encoded),
    st.sampled_from([b"", b"[]", b"{", b"null", b"[1, 2]", b'"text"', b"\xff\xfe"]),
    st.sampled_from(BASE[:20])
    .map(  # invalid UTF-8 inside a string, a BOM, trailing bytes
        lambda span: st.sampled_from(
            [
                orjson.dumps([span]).replace(b'"production"', b'"\xff"'),
                orjson.dumps([span]).replace(b'"production"', b'"\xed\xa0\x80"'),
                b"\xef\xbb\xbf" + orjson.dumps([span]),
                orjson.dumps([span]) + b" x",
                orjson.dumps([span]) + b" \n",
            ]
        )
    )
    .flatmap(lambda strategy: strategy),
)

# --- the two paths


def slow_only(batch: Batch, topic: str) -> tuple[Any, list[DeadLetter], int]:
    letters: list[DeadLetter] = []
    pieces = []
    spans_in = 0
    for message in batch.messages:
        piece, count = _slow_piece(message, f"{topic}/{batch.partition}/{message.offset}", letters)
        spans_in += count
        if piece is not None:
            pieces.append(piece)
    return _valid_spans(pieces), letters, spans_in


def letters_without_time(letters: list[DeadLetter]) -> list[tuple[bytes, dict[str, Any]]]:
    out = []
    for key, value in letters:
        record = orjson.loads(value)
        record.pop("rejected_at")
        out.append((key, record))
    return out


def assert_same(batch: Batch) -> None:
    fast, fast_letters, fast_in = decode_batch(batch, "spans")
    slow, slow_letters, slow_in = slow_only(batch, "spans")
    assert fast_in == slow_in
    assert letters_without_time(fast_letters) == letters_without_time(slow_letters)
    pd.testing.assert_frame_equal(fast.frame, slow.frame, check_exact=True)
    for name in ("offsets", "items", "sources", "stamps"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name
    taken = sum(1 for message in batch.messages if decode_records(message.value))
    TALLY["messages"] += len(batch.messages)
    TALLY["fast decode"] += taken
    TALLY["valid spans"] += len(slow)
    TALLY["dead letters"] += len(slow_letters)


@PROPERTY
@given(st.lists(MESSAGES, min_size=1, max_size=4))
def test_fast_and_slow_paths_agree_on_generated_messages(values: list[bytes]) -> None:
    messages = [Message(0, 100 + i, value, f"src{i % 2}", 1_700_000_000_000 + i) for i, value in enumerate(values)]
    assert_same(Batch(0, messages[0].offset, messages[-1].offset, messages, replayed=False))


def test_the_fast_path_takes_the_simulator_workload_whole_and_agrees() -> None:
    """Valid traffic never falls back: the fast path is the path, not a formality."""
    values = [orjson.dumps(BASE[i : i + 100]) for i in range(0, len(BASE), 100)]
    records = [decode_records(value) for value in values]
    assert all(r is not None for r in records)
    assert not refused(record_columns([r for rs in records for r in rs or []])).any()
    messages = [Message(0, i, value, "sim", 0) for i, value in enumerate(values)]
    assert_same(Batch(0, 0, len(messages) - 1, messages, replayed=False))


def test_every_listed_time_form_agrees() -> None:
    """Each odd time form as a start (with a duration) and as an end, one message each."""
    span = next(span for span in BASE if "end_time" not in span)
    values = []
    for form in TIME_FORMS:
        values.append(orjson.dumps([span, {**span, "start_time": form}]))
        values.append(orjson.dumps([{**span, "start_time": "2026-11-21T23:59:00Z", "end_time": form}]))
    messages = [Message(0, i, value, "x", 0) for i, value in enumerate(values)]
    assert_same(Batch(0, 0, len(messages) - 1, messages, replayed=False))


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"service": " padded "}, "pydantic strips it"),
        ({"attributes": {"k ": "v"}}, "a map key pydantic strips"),
        ({"retrieval_doc_ids": ["d\u3000"], "retrieval_scores": [0.5]}, "a list item pydantic strips"),
        ({"start_time": "2026-11-22T00:00:00.1234567Z"}, "pydantic truncates the fraction, msgspec rounds"),
        ({"start_time": "2026-11-22T00:00:00"}, "naive: the model's UTC rule"),
        ({"start_time": "2100-01-01T00:30:00-01:00"}, "outside the storable range"),
        ({"input_tokens": 5, "cache_read_tokens": 6}, "a cross-field rule"),
        ({"input_tokens": "12"}, "lax pydantic coerces it"),
    ],
)
def test_the_fast_path_hands_over_what_it_cannot_decide(change: dict[str, Any], why: str) -> None:
    value = orjson.dumps([BASE[0], {**BASE[1], **change}])
    records = decode_records(value)
    assert records is None or refused(record_columns(records))[1], why
    assert_same(Batch(0, 7, 7, [Message(0, 7, value, "x", 0)], replayed=False))


def test_records_are_generated_from_the_model() -> None:
    struct_fields = {info.name: info for info in msgspec.structs.fields(SpanRecord)}
    assert set(struct_fields) == set(Span.model_fields) and tuple(Span.model_fields) == FIELDS
    for name, info in Span.model_fields.items():
        if not info.is_required():
            default = info.get_default(call_default_factory=True)
            record_default = struct_fields[name].default
            if record_default is msgspec.NODEFAULT:
                record_default = struct_fields[name].default_factory()
            assert record_default == (default.value if hasattr(default, "value") else default), name
    assert dict_columns([]).arrays.keys() == record_columns([]).arrays.keys()


def test_an_unknown_constraint_stops_the_fast_path_from_being_built() -> None:
    with pytest.raises(TypeError, match=r"teach records\.py"):
        _convert(Annotated[str, Field(pattern="^a$")], [])


def test_frames_of_both_paths_hold_the_same_columns() -> None:
    spans = validate_items(orjson.loads(orjson.dumps(BASE))).spans
    records = decode_records(orjson.dumps(BASE))
    assert records is not None
    pd.testing.assert_frame_equal(
        columns_to_frame(record_columns(records)), columns_to_frame(dict_columns(spans)), check_exact=True
    )


def teardown_module() -> None:
    print(f"\nfast-path agreement: {dict(TALLY)}")
