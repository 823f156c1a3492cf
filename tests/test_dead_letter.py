"""Dead letters always fit: at most the limit, valid JSON, whatever the payload, reason or errors."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanline.contract.dead_letter import MAX_LETTER_BYTES, MIN_LETTER_BYTES, dead_letter
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch

KIB = 1024


def letter(payload: Any, max_bytes: int = MAX_LETTER_BYTES, **fields: Any) -> dict[str, Any]:
    """The letter's record, after checking it fits and its key is its dedup_key."""
    fields = {"reason": "bad span", "source": "http", "dedup_key": "spans/3/1187#4", "tenant_id": "acme", **fields}
    key, value = dead_letter(payload=payload, max_bytes=max_bytes, **fields)
    assert len(key) + len(value) <= max_bytes
    record = orjson.loads(value)
    assert record["dedup_key"].encode() == key
    return record


def assert_truncated(record: dict[str, Any], original: bytes) -> None:
    assert record["payload_truncated"] is True
    assert record["payload_bytes"] == len(original)
    assert record["payload_sha256"] == hashlib.sha256(original).hexdigest()
    assert isinstance(record["payload"], str) and len(record["payload"]) > 100 * KIB  # most of the room is kept
    assert (record["reason"], record["source"], record["dedup_key"], record["tenant_id"]) == (
        "bad span",
        "http",
        "spans/3/1187#4",
        "acme",
    )


def test_the_limit_is_well_under_kafkas_default_message_size() -> None:
    assert MAX_LETTER_BYTES == 256 * KIB < 1_000_000


def test_a_small_letter_keeps_the_payload_as_it_was() -> None:
    item = {"span_id": "s1", "input_tokens": -5, "attributes": {"k": "v"}}
    record = letter(item, errors=[{"field": "input_tokens", "message": "Input should be >= 0"}])
    assert record["payload"] == item and "payload_truncated" not in record
    assert record["errors"] == [{"field": "input_tokens", "message": "Input should be >= 0"}]
    assert datetime.fromisoformat(record["rejected_at"]) <= datetime.now(UTC)


def test_a_2_mb_item_is_cut_to_a_prefix_with_its_size_and_digest() -> None:
    item = {"span_id": "s1", "content": "é" * 1_000_000}
    record = letter(item)
    original = orjson.dumps(item)
    assert len(original) > 2_000_000
    assert_truncated(record, original)
    assert original.decode().startswith(record["payload"])


def test_300_kb_of_undecodable_bytes_fit_with_their_size_and_digest() -> None:
    value = bytes(range(128, 256)) * 2400
    record = letter(value)
    assert_truncated(record, value)
    assert record["payload"].startswith("\\x80\\x81")  # the bytes, spelled out as escapes


def test_control_characters_which_json_escapes_sixfold_still_fit() -> None:
    record = letter("\x01" * 200_000)
    assert_truncated(record, orjson.dumps("\x01" * 200_000))


def test_a_huge_reason_and_thousands_of_errors_are_cut_and_counted() -> None:
    errors = [{"field": f"retrieval_scores.{i}", "message": "Input should be a finite number"} for i in range(20_000)]
    reason = "; ".join(f"[0].{e['field']}: {e['message']}" for e in errors)
    record = letter({"span_id": "s1"}, reason=reason, errors=errors)
    assert record["reason"].startswith("[0].retrieval_scores.0: ") and record["reason"].endswith(
        f"[cut, {len(reason)} characters in all]"
    )
    assert 0 < len(record["errors"]) < len(errors) and record["errors"][0] == errors[0]
    assert len(record["errors"]) + record["errors_omitted"] == len(errors)
    assert record["payload"] == {"span_id": "s1"}  # the metadata's shares leave the payload its room


def test_oversized_origin_fields_are_cut_too() -> None:
    record = letter(b"x", dedup_key="http/" + "r" * 100_000 + "#0", source="s" * 100_000, tenant_id="t" * 100_000)
    assert record["dedup_key"].startswith("http/rrr") and "[cut," in record["dedup_key"]
    assert len(record["source"]) < 5 * KIB and len(record["tenant_id"]) < 5 * KIB


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


class Unreadable(dict[str, Any]):
    """orjson reads the dict itself (and refuses its lone surrogate); anyone else calls items()."""

    def items(self) -> Any:
        raise RuntimeError("no")


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"a": [value]}
    return value


def cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (None, None),
        (b"", ""),
        (b"\xff\xfe[", "\\xff\\xfe["),
        (b'[{"span_id": "\xed\xa0\x80"}]', '[{"span_id": "\\xed\\xa0\\x80"}]'),  # a surrogate written raw: not UTF-8
        ({1: "a", None: "b", 2.5: "c"}, {"1": "a", "null": "b", "2.5": "c"}),
        ({(1, 2): "tuple key", "big": 2**70}, {"(1, 2)": "tuple key", "big": str(2**70)}),
        ({"s": "lone \ud800", "\udfff": 1}, {"s": "lone \\ud800", "\\udfff": 1}),
        ({"x": Unprintable()}, {"x": "<Unprintable that cannot be printed>"}),
        ({"n": float("nan"), "i": float("inf")}, {"n": None, "i": None}),
        (Unreadable({"s": "\ud800"}), "<Unreadable that cannot be read>"),
    ],
)
def test_any_payload_becomes_valid_json(payload: Any, expected: Any) -> None:
    assert letter(payload)["payload"] == expected


@pytest.mark.parametrize("payload", [nested(1000), cyclic(), [nested(130)] * 3])
def test_payloads_too_deep_for_json_are_kept_to_a_depth(payload: Any) -> None:
    record = letter(payload)
    assert "nested deeper than 64 levels" in orjson.dumps(record["payload"]).decode()


def test_a_smaller_limit_is_honoured_and_a_tiny_one_refused() -> None:
    record = letter({"content": "x" * 100_000}, max_bytes=MIN_LETTER_BYTES, reason="r" * 10_000)
    assert record["payload_truncated"] and record["reason"].endswith("characters in all]")
    with pytest.raises(ValueError, match="at least"):
        dead_letter(reason="r", source="s", dedup_key="k", payload=None, max_bytes=MIN_LETTER_BYTES - 1)


PAYLOADS = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**90), max_value=2**90),
        st.floats(),
        st.text(max_size=50),
        st.binary(max_size=50),
        st.just("\ud800"),
        st.just("\x00" * 5000),
        st.just("€" * 3000),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers(), st.none(), st.floats()), inner, max_size=5),
    ),
    max_leaves=40,
)


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    payload=st.one_of(PAYLOADS, st.binary(max_size=20_000)),
    reason=st.one_of(st.text(max_size=100), st.just("x" * 5000), st.just("\ud800")),
    errors=st.lists(
        st.fixed_dictionaries({"field": st.text(max_size=20), "message": st.text(max_size=300)}), max_size=200
    ),
    max_bytes=st.sampled_from([MIN_LETTER_BYTES, 5000, 16 * KIB, MAX_LETTER_BYTES]),
)
def test_any_payload_gives_a_letter_within_the_limit(
    payload: Any, reason: str, errors: list[dict[str, str]], max_bytes: int
) -> None:
    record = letter(payload, max_bytes=max_bytes, reason=reason, errors=errors)
    if record.get("payload_truncated"):
        original = bytes(payload) if isinstance(payload, bytes) else None
        if original is not None:
            assert record["payload_bytes"] == len(original)
            assert record["payload_sha256"] == hashlib.sha256(original).hexdigest()


def test_the_worker_letters_name_the_offset_to_read_the_original_back_from() -> None:
    """An oversized invalid item and an oversized undecodable message, through the worker's batch path."""
    item = {
        "span_id": "s1",
        "trace_id": "t1",
        "service": "svc",
        "kind": "llm",
        "start_time": "2300-01-01T00:00:00Z",
        "duration_ms": 1.0,
        "content": "x" * 3_000_000,
    }
    garbage = b"\xff" * 400_000
    messages = [Message(2, 40, orjson.dumps([{"not": "a span"}, item]), "test"), Message(2, 41, garbage, "test")]
    processed = process_batch(Batch(2, 40, 41, messages, False), "spans", PriceCatalog.load())
    assert all(len(key) + len(value) <= MAX_LETTER_BYTES for key, value in processed.dead_letters)
    letters = {key.decode(): orjson.loads(value) for key, value in processed.dead_letters}
    assert set(letters) == {"spans/2/40#0", "spans/2/40#1", "spans/2/41"}
    oversized = letters["spans/2/40#1"]
    assert "start_time 2300-01-01T00:00:00Z is outside the storable range" in oversized["reason"]
    assert oversized["payload_sha256"] == hashlib.sha256(orjson.dumps(item)).hexdigest()
    assert letters["spans/2/41"]["payload_sha256"] == hashlib.sha256(garbage).hexdigest()
    assert letters["spans/2/40#0"]["payload"] == {"not": "a span"}
