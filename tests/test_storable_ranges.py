"""The schema admits only what storage can hold (spanline/contract/schema.py).

Each bound is checked just inside and just outside, by the model (the receiver's 207) and by
batch validation (the worker's dead letters), which must agree word for word. Then spans at
every extreme the model accepts go through the worker's transformation into chDB with the
real migrations, and the raw rows and the minute/hour/day rollups must hold them exactly.
"""

from __future__ import annotations

import collections.abc
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from spanline.contract.schema import (
    MAX_DURATION_MS,
    MAX_MAGNITUDE,
    MAX_TOKENS,
    STORABLE_FROM,
    STORABLE_RANGE,
    STORABLE_UNTIL,
    Span,
)
from spanline.contract.validation import validate_items
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch
from spanline.streams.sinks import DEDUP_SETTINGS
from tests.support.chdb import migrated_chdb
from tests.support.stored_spans import insert_rollup

DB = "storable"
TOPIC = "spans"


def span(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "span_id": "s1",
        "trace_id": "t1",
        "service": "svc",
        "kind": "llm",
        "provider": "openai",
        "model_requested": "gpt-4o",
        "start_time": "2026-11-22T10:00:00Z",
        "duration_ms": 120.0,
    }
    return {**base, **fields}


def verdicts(item: dict[str, Any]) -> tuple[list[str] | None, list[str] | None]:
    """(model's messages, batch validation's messages); None = accepted."""
    try:
        Span.model_validate(item)
        model = None
    except ValidationError as error:
        model = [detail["msg"] for detail in error.errors(include_url=False)]
    result = validate_items([item])
    batch = None if result.spans else [error.message for error in result.invalid[0].errors]
    return model, batch


def assert_accepted(item: dict[str, Any]) -> None:
    assert verdicts(item) == (None, None)


def assert_refused(item: dict[str, Any], words: str) -> None:
    model, batch = verdicts(item)
    assert model is not None and model == batch, (model, batch)
    assert any(words in message for message in model), model


# --- time


RANGE = f"is outside the storable range {STORABLE_RANGE}"


@pytest.mark.parametrize(
    "start",
    [
        "1970-01-01T00:00:00Z",
        "1970-01-01T01:00:00+01:00",
        "1969-12-31T23:00:00-01:00",
        0,
        "1970-01-01T00:00:00",
        "2099-12-31T23:59:59.999Z",
        "2100-01-01T00:59:59.999+01:00",
        "2099-12-31T22:59:59.999-01:00",
        4_102_444_799,
    ],
)
def test_instants_just_inside_the_range_are_accepted(start: object) -> None:
    assert_accepted(span(start_time=start, duration_ms=0.0))
    assert_accepted(span(start_time=start, duration_ms=None, end_time=start))


@pytest.mark.parametrize(
    ("start", "shown"),
    [
        ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999000Z"),
        ("1970-01-01T00:59:59.999+01:00", "1970-01-01T00:59:59.999000+01:00"),
        (-1, "1969-12-31T23:59:59Z"),
        ("2100-01-01T00:00:00Z", "2100-01-01T00:00:00Z"),
        ("2099-12-31T23:00:00-01:00", "2099-12-31T23:00:00-01:00"),
        (4_102_444_800, "2100-01-01T00:00:00Z"),
        ("2300-01-01T00:00:00Z", "2300-01-01T00:00:00Z"),
        ("0001-01-01T00:00:00+23:59", "0001-01-01T00:00:00+23:59"),
        ("9999-12-31T23:59:59-23:59", "9999-12-31T23:59:59-23:59"),
    ],
)
def test_instants_just_outside_the_range_are_refused_with_the_range(start: object, shown: str) -> None:
    assert_refused(span(start_time=start), f"start_time {shown} {RANGE}")
    assert_refused(span(end_time=start, duration_ms=None), f"end_time {shown} {RANGE}")


def test_a_span_must_also_end_inside_the_range() -> None:
    last_day = "2099-12-31T00:00:00Z"
    assert_accepted(span(start_time=last_day, duration_ms=MAX_DURATION_MS - 1))
    assert_accepted(span(start_time="2099-12-31T23:59:59.999Z", duration_ms=0.999))
    assert_refused(
        span(start_time=last_day, duration_ms=MAX_DURATION_MS),
        f"start_time + duration_ms (2100-01-01T00:00:00Z) {RANGE}",
    )
    assert_refused(
        span(start_time="2099-12-31T23:59:59.999Z", duration_ms=1.0),
        f"start_time + duration_ms (2100-01-01T00:00:00Z) {RANGE}",
    )
    assert_refused(
        span(start_time="2100-01-01T00:30:00+01:00", duration_ms=MAX_DURATION_MS / 2),
        f"start_time + duration_ms (2100-01-01T11:30:00Z) {RANGE}",
    )
    assert_refused(span(start_time=last_day, duration_ms=None, end_time="2100-01-01T00:00:00Z"), "end_time 2100")


# --- numbers

FLOAT_FIELDS = {  # field -> how to set a value on a span
    "duration_ms": lambda v: {"duration_ms": v},
    "ttft_ms": lambda v: {"ttft_ms": v},
    "retry_after_s": lambda v: {"retry_after_s": v},
    "cache_similarity": lambda v: {"cache_similarity": v},
    "eval_score": lambda v: {"eval_score": v},
    "cost_usd_reported": lambda v: {"cost_usd_reported": v},
    "retrieval_scores": lambda v: {"retrieval_scores": [0.5, v], "retrieval_doc_ids": ["a", "b"]},
}


@pytest.mark.parametrize("field", sorted(FLOAT_FIELDS))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_every_float_field_is_finite(field: str, value: float) -> None:
    assert_refused(span(**FLOAT_FIELDS[field](value)), "finite number")


@pytest.mark.parametrize(
    ("field", "low", "high"),
    [
        ("duration_ms", 0.0, MAX_DURATION_MS),
        ("ttft_ms", 0.0, MAX_DURATION_MS),
        ("retry_after_s", 0.0, MAX_MAGNITUDE),
        ("cache_similarity", 0.0, 1.0),
        ("eval_score", -MAX_MAGNITUDE, MAX_MAGNITUDE),
        ("cost_usd_reported", 0.0, MAX_MAGNITUDE),
        ("retrieval_scores", -MAX_MAGNITUDE, MAX_MAGNITUDE),
    ],
)
def test_float_bounds_just_inside_and_outside(field: str, low: float, high: float) -> None:
    for value in (low, high):
        assert_accepted(span(**FLOAT_FIELDS[field](value)))
    assert_refused(span(**FLOAT_FIELDS[field](np.nextafter(high, math.inf))), "less than or equal to")
    assert_refused(span(**FLOAT_FIELDS[field](np.nextafter(low, -math.inf))), "greater than or equal to")


@pytest.mark.parametrize(
    ("field", "low", "high"),
    [
        ("input_tokens", 0, MAX_TOKENS),
        ("context_window", 0, MAX_TOKENS),
        ("http_status", 100, 599),
        ("attempt", 0, 1000),
        ("top_k", 0, 100_000),
    ],
)
def test_integer_bounds_just_inside_and_outside(field: str, low: int, high: int) -> None:
    for value in (low, high):
        assert_accepted(span(**{field: value}))
    assert_refused(span(**{field: high + 1}), "less than or equal to")
    assert_refused(span(**{field: low - 1}), "greater than or equal to")
    assert_refused(span(**{field: 2**70}), "less than or equal to")


# column type -> (least, greatest) value it holds
TYPE_RANGES: dict[str, tuple[float, float]] = {
    "UInt8": (0, 2**8 - 1),
    "UInt16": (0, 2**16 - 1),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "Float32": (-float(np.finfo(np.float32).max), float(np.finfo(np.float32).max)),
    "Float64": (-float(np.finfo(np.float64).max), float(np.finfo(np.float64).max)),
}


def numeric_bounds(schema: dict[str, Any]) -> tuple[float, float] | None:
    """(minimum, maximum) of a JSON Schema property (nullable or array items included), None if not a number."""
    for option in [schema, *schema.get("anyOf", []), schema.get("items", {})]:
        if "const" in option:
            return option["const"], option["const"]
        if option.get("type") in ("integer", "number"):
            return option.get("minimum", -math.inf), option.get("maximum", math.inf)
    return None


def test_every_number_the_model_accepts_fits_its_column(client: Client) -> None:
    """The model's bounds (from its JSON Schema) against the migrated spans table's column types: integers
    within their type, every float bounded (its column would otherwise hold inf, or a rollup's sum of it)."""
    columns = dict(
        client.query(f"SELECT name, type FROM system.columns WHERE database = '{DB}' AND table = 'spans'").result_rows
    )
    properties = Span.model_json_schema(mode="validation")["properties"]
    checked = []
    for name, schema in properties.items():
        bounds = numeric_bounds(schema)
        if bounds is None or name not in columns:
            continue
        kind = columns[name].removeprefix("Nullable(").removeprefix("Array(").rstrip(")")
        least, greatest = TYPE_RANGES[kind]
        assert least <= bounds[0] and bounds[1] <= greatest, (name, bounds, columns[name])
        if kind.startswith("Float"):
            assert max(abs(bounds[0]), abs(bounds[1])) <= MAX_MAGNITUDE, (name, bounds)
        checked.append(name)
    assert {
        "input_tokens",
        "http_status",
        "attempt",
        "top_k",
        "retry_after_s",
        "retrieval_scores",
        "eval_score",
        "schema_version",
        "duration_ms",
    } <= set(checked)


# --- strings


def string_fields() -> list[str]:
    properties = Span.model_json_schema(mode="validation")["properties"]
    return sorted(
        name
        for name, schema in properties.items()
        if "string" in {option.get("type") for option in [schema, *schema.get("anyOf", [])]}
        and name not in ("start_time", "end_time")
        and "enum" not in str(schema)
        and "$ref" not in str(schema)
    )


SURROGATE = "ok\ud800"


@pytest.mark.parametrize("field", string_fields())
def test_lone_surrogates_are_refused_in_every_string_field(field: str) -> None:
    assert_refused(span(**{field: SURROGATE}), "valid string")
    assert_accepted(span(**{field: "ok \U0001f600 \x00"}))  # any scalar value is fine, NUL and astral ones too


@pytest.mark.parametrize(
    "fields",
    [
        {"retrieval_doc_ids": [SURROGATE], "retrieval_scores": [0.5]},
        {"attributes": {SURROGATE: "v"}},
        {"attributes": {"k": "\udfff"}},
    ],
)
def test_lone_surrogates_are_refused_in_lists_and_maps(fields: dict[str, Any]) -> None:
    assert_refused(span(**fields), "valid string")


def test_string_fields_cover_the_ids_and_labels() -> None:
    assert {"span_id", "trace_id", "service", "content", "model_requested", "user_id_hash"} <= set(string_fields())


def test_json_with_a_lone_surrogate_never_reaches_validation(catalog: PriceCatalog) -> None:
    """orjson (the worker's and the receiver's decoder) refuses an escaped lone surrogate: the whole
    message is dead-lettered, its bytes kept in the letter."""
    value = b'[{"span_id": "\\ud800", "trace_id": "t"}]'
    processed = process_batch(Batch(0, 7, 7, [Message(0, 7, value, "test")], False), TOPIC, catalog)
    assert processed.rows is None and len(processed.dead_letters) == 1
    key, letter = processed.dead_letters[0]
    assert key == b"spans/0/7" and orjson.loads(letter)["payload"] == value.decode()


# --- size


def text_capacity(schema: dict[str, Any]) -> int:
    """Most characters of text a JSON Schema property admits; fails on an uncapped string, list or map."""
    options = [option for option in [schema, *schema.get("anyOf", [])] if option.get("type") not in (None, "null")]
    if not options:  # an enum ($ref) or a constant
        return 0
    (option,) = options
    kind = option["type"]
    if kind == "string":
        return 0 if option.get("format") == "date-time" else option["maxLength"]
    if kind == "array":
        return option["maxItems"] * text_capacity(option["items"])
    if kind == "object":
        return option["maxProperties"] * (
            option["propertyNames"]["maxLength"] + option["additionalProperties"]["maxLength"]
        )
    return 0


def test_every_text_field_is_capped_so_a_span_is_bounded() -> None:
    """Every string, list and map has a cap, so the whole span has one: 3.75 M characters, at most
    15 MB as UTF-8 (the widest span stored below has nearly all of it)."""
    properties = Span.model_json_schema(mode="validation")["properties"]
    capacity = sum(text_capacity(schema) for schema in properties.values())
    assert 3_700_000 < capacity < 4_000_000


# --- validate_items never raises


class Unreadable(collections.abc.Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("unreadable")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("unreadable")

    def __len__(self) -> int:
        return 1


JUNK = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(),
        st.text(max_size=6),
        st.sampled_from(["\ud800", "2300-01-01T00:00:00Z", "1969-12-31T23:59:59Z"]),
        st.binary(max_size=6),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=4),
    ),
    max_leaves=12,
)


@st.composite
def junk_item(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(JUNK)
    item = span(span_id=f"s{draw(st.integers(0, 10**6))}")
    for name, value in draw(st.lists(st.tuples(st.sampled_from(sorted(Span.model_fields)), JUNK), max_size=3)):
        item[name] = value
    return item


@settings(
    max_examples=200, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(items=st.lists(junk_item(), max_size=8))
def test_validate_items_never_raises_and_agrees_with_the_model(items: list[Any]) -> None:
    result = validate_items(items)
    refused = [item.index for item in result.invalid]
    assert sorted(result.indexes + refused) == list(range(len(items))) and not set(result.indexes) & set(refused)
    for index, item in enumerate(items):
        try:
            Span.model_validate(item)
            accepted = True
        except ValidationError:
            accepted = False
        assert accepted == (index in result.indexes), (index, item)


def test_an_item_that_cannot_be_read_is_refused_alone() -> None:
    items = [span(), Unreadable(), span(span_id=Unreadable()), 7]
    result = validate_items(items)
    assert result.indexes == [0]
    reasons = {item.index: item.reason for item in result.invalid}
    assert reasons[1] == "[1]: cannot be validated: RuntimeError while reading it"
    assert reasons[2].startswith("[2].span_id:") and reasons[3].startswith("[3]:")


# --- extremes into storage


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog.load()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with migrated_chdb(tmp_path_factory.mktemp("storable") / "chdb", DB) as chdb:
        yield chdb


WIDE = "\U0001f600"  # four bytes in UTF-8
#: The first and last storable instants (storage keeps milliseconds), and the last day.
EARLIEST = STORABLE_FROM.isoformat()
LATEST = (STORABLE_UNTIL - timedelta(milliseconds=1)).isoformat()
LAST_DAY = (STORABLE_UNTIL - timedelta(days=1)).isoformat()


def before_until(**delta: float) -> str:
    return (STORABLE_UNTIL - timedelta(**delta)).isoformat()


def extreme_spans() -> list[dict[str, Any]]:
    """Spans at the edges of every range the model admits."""
    tokens = {
        "input_tokens": MAX_TOKENS,
        "cache_read_tokens": MAX_TOKENS // 2,
        "cache_write_tokens": MAX_TOKENS // 2,
        "output_tokens": MAX_TOKENS,
        "reasoning_tokens": MAX_TOKENS,
        "context_window": MAX_TOKENS,
    }
    label = WIDE * 255 + "\x00"
    return [
        span(span_id="epoch", start_time=EARLIEST, duration_ms=0.0, **tokens),
        span(span_id="latest", start_time=LATEST, duration_ms=0.0, **tokens),
        span(
            span_id="longest",
            start_time=LAST_DAY,
            duration_ms=MAX_DURATION_MS - 1,
            ttft_ms=MAX_DURATION_MS - 1,
            output_tokens=2,
        ),
        span(
            span_id="ended",
            start_time=before_until(hours=1),
            duration_ms=None,
            end_time=LATEST,
            http_status=599,
            attempt=1000,
            retry_after_s=MAX_MAGNITUDE,
            status="error",
            error_type="rate_limited",
            cost_usd_reported=MAX_MAGNITUDE,
        ),
        span(
            span_id="recall-high",
            kind="eval",
            eval_name="recall@5",
            eval_score=MAX_MAGNITUDE,
            eval_passed=True,
            start_time=before_until(minutes=1),
            duration_ms=1.0,
        ),
        span(
            span_id="recall-low",
            kind="eval",
            eval_name="recall@5",
            eval_score=-MAX_MAGNITUDE,
            start_time=(STORABLE_FROM + timedelta(milliseconds=1)).isoformat(),
            duration_ms=1.0,
        ),
        span(
            span_id="widest",
            kind="retrieval",
            start_time=before_until(hours=13),
            duration_ms=MAX_DURATION_MS / 2,
            service=label,
            name=label,
            prompt_hash=label,
            top_k=100_000,
            cache_similarity=1.0,
            trace_id=WIDE * 128,
            content=WIDE * 65_535 + "\x00",
            attributes={f"{i:03d}" + WIDE * 253: WIDE * 4096 for i in range(256)},
            retrieval_doc_ids=[f"{i:05d}" + WIDE * 251 for i in range(10_000)],
            retrieval_scores=[MAX_MAGNITUDE if i % 2 else -MAX_MAGNITUDE for i in range(10_000)],
        ),
    ]


@pytest.fixture(scope="module")
def stored(client: Client, catalog: PriceCatalog) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """The extreme spans through process_batch, inserted as the worker's sink inserts them."""
    spans = extreme_spans()
    for item in spans:
        Span.model_validate(item)  # the premise: the model accepts every one
    batch = Batch(0, 0, 0, [Message(0, 0, orjson.dumps(spans), "test")], replayed=False)
    processed = process_batch(batch, TOPIC, catalog)
    assert not processed.dead_letters and processed.rows is not None and len(processed.rows) == len(spans)
    # Rows older than a TTL are dropped as soon as ClickHouse merges for TTL: that is retention, not
    # storage. Stopped here, so the epoch rows can be read back.
    for table in ("spans", "spans_minute", "spans_hour", "spans_day"):
        client.command(f"SYSTEM STOP TTL MERGES {DB}.{table}")
    client.insert_arrow(
        f"{DB}.spans",
        processed.table,
        settings={**DEDUP_SETTINGS, "insert_deduplication_token": batch.token(TOPIC, "id")},
    )
    insert_rollup(client, DB, processed.rows, batch.token(TOPIC, "id"))  # as the sink's write_rollup
    return spans, processed.rows


def utc(text: str) -> datetime:
    return pd.Timestamp(text).tz_convert("UTC").tz_localize(None).to_pydatetime()


def test_the_raw_rows_hold_every_extreme_exactly(
    client: Client, stored: tuple[list[dict[str, Any]], pd.DataFrame]
) -> None:
    spans, _ = stored
    rows = {row["span_id"]: row for row in client.query(f"SELECT * FROM {DB}.spans").named_results()}
    assert set(rows) == {item["span_id"] for item in spans}
    for item in spans:
        row = rows[item["span_id"]]
        start = utc(item["start_time"])
        assert row["start_time"] == start, item["span_id"]
        end = utc(item["end_time"]) if item.get("end_time") else start + timedelta(milliseconds=item["duration_ms"])
        assert row["end_time"] == end.replace(microsecond=end.microsecond // 1000 * 1000), item["span_id"]
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "context_window",
            "http_status",
            "attempt",
            "top_k",
            "eval_score",
            "cost_usd_reported",
            "content",
            "service",
            "trace_id",
            "name",
        ):
            if name in item:
                assert row[name] == item[name], (item["span_id"], name)
        for name in ("retry_after_s", "cache_similarity"):  # Float32 columns
            if name in item:
                assert row[name] == np.float32(item[name]) and math.isfinite(row[name]), (item["span_id"], name)
    widest = rows["widest"]
    assert widest["attributes"] == spans[-1]["attributes"]
    assert widest["retrieval_doc_ids"] == spans[-1]["retrieval_doc_ids"]
    assert widest["retrieval_scores"] == [float(np.float32(v)) for v in spans[-1]["retrieval_scores"]]
    assert all(
        math.isfinite(row[name]) for row in rows.values() for name in ("duration_ms", "cost_usd", "input_cost_usd")
    )


LEVELS = {"spans_minute": ("minute", "min"), "spans_hour": ("hour", "h"), "spans_day": ("day", "D")}


@pytest.mark.parametrize("table", sorted(LEVELS))
def test_the_rollups_hold_every_extreme(
    client: Client, stored: tuple[list[dict[str, Any]], pd.DataFrame], table: str
) -> None:
    _, rows = stored
    column, unit = LEVELS[table]
    starts = rows["start_time"].dt.tz_convert("UTC").dt.tz_localize(None).dt.floor(unit)
    recall = rows["eval_score"].astype("float64").fillna(0.0)
    expected = (
        pd.DataFrame(
            {"bucket": starts, "spans": 1, "input_tokens": rows["input_tokens"].astype("uint64"), "recall_sum": recall}
        )
        .groupby("bucket")
        .sum()
    )
    stored_rows = client.query_df(
        f"SELECT {column} AS bucket, sum(spans) AS spans, sum(input_tokens) AS input_tokens, sum(recall_sum) AS recall_sum,"
        f" sum(cost_usd) AS cost_usd FROM {DB}.{table} GROUP BY bucket ORDER BY bucket"
    )
    stored_rows["bucket"] = pd.to_datetime(stored_rows["bucket"])
    stored_rows = stored_rows.set_index("bucket")
    assert list(stored_rows.index) == list(expected.index)
    assert stored_rows["spans"].tolist() == expected["spans"].tolist()
    assert stored_rows["input_tokens"].tolist() == expected["input_tokens"].tolist()
    assert stored_rows["recall_sum"].tolist() == expected["recall_sum"].tolist()
    assert np.isfinite(stored_rows["cost_usd"]).all()
    assert expected.index[0] == utc(EARLIEST) and expected.index[-1] == pd.Timestamp(utc(LATEST)).floor(unit)


def test_the_latest_rows_do_not_expire_at_once(
    client: Client, stored: tuple[list[dict[str, Any]], pd.DataFrame]
) -> None:
    """A TTL adds up to a year to a DateTime, which wraps past 2106-02-07 to 1970 (instant expiry):
    the storable range ends early enough that no TTL of the latest rows wraps."""
    parts = client.query(
        f"SELECT table, partition, delete_ttl_info_min > now() FROM system.parts"
        f" WHERE database = '{DB}' AND active AND rows > 0 AND partition LIKE '{LATEST[:4]}%'"
    ).result_rows
    assert {table for table, _, _ in parts} == {"spans", "trace_index", *LEVELS}
    assert all(alive for _, _, alive in parts), parts
