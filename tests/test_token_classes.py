"""Schema 1.1's token classes: validation, the SDK's and OTLP's extraction, and their cost.

Prices are the bundled genai-prices catalog's, which follow the providers' pages (README "Token
classes" cites them): claude-sonnet-4-5 $3 input, $0.30 cache read, $3.75 5-minute and $6 1-hour
cache writes, $15 output per MTok; gpt-realtime $4 text / $32 audio / $5 image input, $0.40 cached
text and audio, $0.50 cached image, $16 text / $64 audio output; gpt-audio $2.50 / $32 audio input,
$10 / $64 audio output, no cache rates; gpt-4o $2.50 input, $1.25 cached, $10 output.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from genai_prices import Usage, calc_price
from pydantic import ValidationError

import spanline_sdk as sdk
from spanline.contract.schema import TOKEN_DETAIL_FIELDS, TOKEN_FIELDS, Span
from spanline.contract.schema_export import SCHEMA_PATH
from spanline.contract.validation import validate_items
from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch
from spanline.streams.sinks import DEDUP_SETTINGS
from spanline_sdk.usage import extract_usage
from tests.support.chdb import migrated_chdb
from tests.test_otlp import attrs, one_span, stored
from tests.test_schema import span
from tests.test_sdk import Recorder, recorder, sent

MTOK = Decimal(1_000_000)
__all__ = ["recorder"]  # tests/test_sdk.py's fixture: the default tracer wired to a recording transport


def assert_usd(actual: object, expected: Decimal) -> None:
    """A float cost equals the exact Decimal one to float precision."""
    assert float(str(actual)) == pytest.approx(float(expected), rel=1e-12, abs=0)


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog.load()


# --- schema 1.1 -------------------------------------------------------------------------------


def test_v1_spans_stay_valid_and_details_default_to_zero() -> None:
    model = Span.model_validate(span(cache_write_tokens=40))
    assert {name: getattr(model, name) for name in TOKEN_DETAIL_FIELDS} == dict.fromkeys(TOKEN_DETAIL_FIELDS, 0)
    assert model.schema_version == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cache_write_tokens": 40, "cache_write_5m_tokens": 30, "cache_write_1h_tokens": 11}, "cache_write_5m_tokens"),
        ({"cache_write_tokens": 0, "cache_write_1h_tokens": 1}, "cache_write_5m_tokens"),
        ({"input_audio_tokens": 10, "cache_read_tokens": 5, "cache_audio_read_tokens": 6}, "cache_audio_read_tokens"),
        ({"input_audio_tokens": 4, "cache_read_tokens": 50, "cache_audio_read_tokens": 5}, "cache_audio_read_tokens"),
        ({"input_image_tokens": 9, "cache_read_tokens": 50, "cache_image_read_tokens": 10}, "cache_image_read_tokens"),
        ({"input_audio_tokens": 80, "input_image_tokens": 30}, "uncached audio"),
        ({"cache_read_tokens": 60, "input_audio_tokens": 50}, "uncached audio"),
        ({"output_audio_tokens": 15, "output_image_tokens": 6}, "output_audio_tokens"),
        ({"reasoning_tokens": 10, "output_audio_tokens": 11}, "output_audio_tokens"),
    ],
)
def test_details_must_fit_inside_the_counts_they_are_part_of(fields: dict[str, int], message: str) -> None:
    """input 100, output 20 (the base span): each detail is a part, never an addition."""
    with pytest.raises(ValidationError, match=message):
        Span.model_validate(span(**fields))
    (invalid,) = validate_items([span(**fields)]).invalid  # the batch path words it the same way
    assert message in invalid.reason


def test_parts_that_fit_are_valid() -> None:
    Span.model_validate(
        span(
            input_tokens=100,
            cache_read_tokens=50,  # 20 of them audio, 10 image
            cache_write_tokens=20,
            cache_write_5m_tokens=5,
            cache_write_1h_tokens=15,
            input_audio_tokens=25,
            cache_audio_read_tokens=20,
            input_image_tokens=15,
            cache_image_read_tokens=10,
            output_tokens=20,
            reasoning_tokens=5,
            output_audio_tokens=10,
            output_image_tokens=5,
        )
    )


# --- SDK: provider usage objects --------------------------------------------------------------


def test_anthropic_usage_with_cache_writes_split_by_ttl() -> None:
    """Anthropic's input_tokens exclude the cache; cache_creation splits the writes by TTL."""
    usage = {
        "input_tokens": 50,
        "cache_read_input_tokens": 1_000,
        "cache_creation_input_tokens": 3_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 2_000},
        "output_tokens": 200,
    }
    fields = extract_usage({"stop_reason": "end_turn", "usage": usage})
    assert fields == {
        "input_tokens": 4_050,
        "output_tokens": 200,
        "cache_read_tokens": 1_000,
        "cache_write_tokens": 3_000,
        "cache_write_5m_tokens": 1_000,
        "cache_write_1h_tokens": 2_000,
    }
    # the SDK's objects (attribute access) read the same, and an older response has no split
    as_object = SimpleNamespace(stop_reason="end_turn", usage=SimpleNamespace(**{**usage, "cache_creation": None}))
    assert "cache_write_1h_tokens" not in extract_usage(as_object)
    assert extract_usage(as_object)["cache_write_tokens"] == 3_000


def test_openai_chat_usage_with_audio_and_images() -> None:
    usage = {
        "prompt_tokens": 1_000,
        "completion_tokens": 300,
        "prompt_tokens_details": {"cached_tokens": 200, "audio_tokens": 400, "image_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 250},
    }
    assert extract_usage({"choices": [], "usage": usage}) == {
        "input_tokens": 1_000,
        "output_tokens": 300,
        "cache_read_tokens": 200,
        "reasoning_tokens": 0,
        "input_audio_tokens": 400,
        "input_image_tokens": 100,
        "output_audio_tokens": 250,
    }


def test_openai_realtime_and_image_usage() -> None:
    realtime = {
        "input_tokens": 900,
        "output_tokens": 120,
        "input_token_details": {
            "cached_tokens": 500,
            "audio_tokens": 600,
            "image_tokens": 100,
            "text_tokens": 200,
            "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 350, "image_tokens": 50},
        },
        "output_token_details": {"text_tokens": 20, "audio_tokens": 100},
    }
    fields = extract_usage({"usage": realtime})
    assert fields == {
        "input_tokens": 900,
        "output_tokens": 120,
        "cache_read_tokens": 500,
        "reasoning_tokens": 0,
        "input_audio_tokens": 600,
        "cache_audio_read_tokens": 350,
        "input_image_tokens": 100,
        "cache_image_read_tokens": 50,
        "output_audio_tokens": 100,
    }
    Span.model_validate(span(**fields))
    image = {
        "input_tokens": 80,
        "output_tokens": 4_160,
        "input_tokens_details": {"text_tokens": 30, "image_tokens": 50},
    }
    assert extract_usage({"usage": image})["input_image_tokens"] == 50


def test_openai_cache_writes_fill_the_total() -> None:
    usage = {
        "input_tokens": 5_000,
        "output_tokens": 10,
        "input_tokens_details": {
            "cached_tokens": 1_000,
            "cache_write_tokens": 3_000,
            "cache_write_tokens_details": {"ttl_30m_tokens": 3_000, "ttl_12h_tokens": 0},
        },
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    fields = extract_usage({"usage": usage})
    assert (fields["cache_read_tokens"], fields["cache_write_tokens"]) == (1_000, 3_000)
    assert not {"cache_write_5m_tokens", "cache_write_1h_tokens"} & fields.keys()


def test_recorded_details_land_on_the_sdk_span(recorder: Recorder) -> None:
    """Through the SDK's own path: record_response -> exported span, validated by the fixture."""
    with sdk.llm_call(name="cached", provider="anthropic", model="claude-sonnet-4-5") as span:
        span.record_response(
            {
                "model": "claude-sonnet-4-5-20250929",
                "stop_reason": "end_turn",
                "usage": {
                    "input_tokens": 10,
                    "cache_creation_input_tokens": 500,
                    "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 400},
                    "output_tokens": 5,
                },
            }
        )
    cached = sent(recorder)["cached"]
    assert (cached["input_tokens"], cached["cache_write_tokens"]) == (510, 500)
    assert (cached["cache_write_5m_tokens"], cached["cache_write_1h_tokens"]) == (100, 400)


# --- OTLP ---------------------------------------------------------------------------------------


def test_openinference_audio_details_and_spanline_ttl_split(catalog: PriceCatalog) -> None:
    """OpenInference names audio details; no convention names a TTL split, spanline.<field> does."""
    audio = one_span(
        {
            "openinference.span.kind": "LLM",
            "llm.provider": "openai",
            "llm.model_name": "gpt-audio",
            "llm.token_count.prompt": 1_000,
            "llm.token_count.prompt_details.audio": 800,
            "llm.token_count.completion": 500,
            "llm.token_count.completion_details.audio": 400,
        }
    )
    assert (audio["input_audio_tokens"], audio["output_audio_tokens"]) == (800, 400)
    assert attrs(audio)["spanline.convention"] == "openinference"
    assert not {key for key in attrs(audio) if key.startswith("llm.token_count")}
    anthropic = one_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.usage.input_tokens": 10_000,
            "gen_ai.usage.cache_creation.input_tokens": 6_000,
            "spanline.cache_write_1h_tokens": 4_000,
            "gen_ai.usage.output_tokens": 100,
        }
    )
    assert (anthropic["cache_write_tokens"], anthropic["cache_write_1h_tokens"]) == (6_000, 4_000)
    rows = stored([audio, anthropic], catalog)
    # gpt-audio: 200 text at $2.50 + 800 audio at $32; 100 text at $10 + 400 audio at $64
    assert_usd(rows.iloc[0]["cost_usd"], (200 * Decimal("2.5") + 800 * 32 + 100 * 10 + 400 * 64) / MTOK)
    # claude-sonnet-4-5: 4,000 uncached at $3, 2,000 5-minute writes at $3.75, 4,000 1-hour at $6
    assert_usd(rows.iloc[1]["cache_write_cost_usd"], (2_000 * Decimal("3.75") + 4_000 * 6) / MTOK)
    assert_usd(rows.iloc[1]["input_cost_usd"], 4_000 * Decimal(3) / MTOK)


# --- cost arithmetic ----------------------------------------------------------------------------


def frame(rows: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Spans as the worker's frame holds them: every count and detail, absent ones 0."""
    base = {
        "tenant_id": "acme",
        "provider": "",
        "model_response": "",
        "model_requested": "",
        "start_time": pd.Timestamp("2026-11-01T12:00:00Z"),
        **dict.fromkeys((*TOKEN_FIELDS, *TOKEN_DETAIL_FIELDS), 0),
    }
    out = pd.DataFrame([{**base, **row} for row in rows])
    out["start_time"] = out["start_time"].astype("datetime64[ms, UTC]")
    return out


def test_one_hour_cache_writes_cost_their_own_rate(catalog: PriceCatalog) -> None:
    claude = {"provider": "anthropic", "model_requested": "claude-sonnet-4-5"}
    tokens = {"input_tokens": 10_000, "cache_read_tokens": 2_000, "cache_write_tokens": 6_000, "output_tokens": 1_000}
    priced = catalog.price(
        frame(
            [
                {**claude, **tokens, "cache_write_5m_tokens": 2_000, "cache_write_1h_tokens": 4_000},
                {**claude, **tokens, "cache_write_1h_tokens": 4_000},  # the unsplit rest is 5-minute
                {**claude, **tokens},  # no split: every write at the 5-minute rate, as before 1.1
            ]
        )
    )
    uncached, read, output = 2_000 * Decimal(3), 2_000 * Decimal("0.3"), 1_000 * Decimal(15)
    split_writes = 2_000 * Decimal("3.75") + 4_000 * Decimal(6)
    for row in (0, 1):
        assert_usd(priced["cache_write_cost_usd"].iat[row], split_writes / MTOK)
        assert_usd(priced["cost_usd"].iat[row], (uncached + read + split_writes + output) / MTOK)
    assert_usd(priced["cache_write_cost_usd"].iat[2], 6_000 * Decimal("3.75") / MTOK)
    assert_usd(priced["cost_usd"].iat[2], (uncached + read + 6_000 * Decimal("3.75") + output) / MTOK)


def test_audio_and_image_tokens_cost_their_own_rates(catalog: PriceCatalog) -> None:
    """gpt-realtime: input 10,000 = 1,000 uncached text + 1,000 cached text + 6,000 audio (2,000 of
    them cached) + 2,000 image (1,000 cached); output 3,000 = 1,000 text + 2,000 audio."""
    priced = catalog.price(
        frame(
            [
                {
                    "provider": "openai",
                    "model_requested": "gpt-realtime",
                    "input_tokens": 10_000,
                    "cache_read_tokens": 4_000,
                    "input_audio_tokens": 6_000,
                    "cache_audio_read_tokens": 2_000,
                    "input_image_tokens": 2_000,
                    "cache_image_read_tokens": 1_000,
                    "output_tokens": 3_000,
                    "output_audio_tokens": 2_000,
                }
            ]
        )
    ).iloc[0]
    input_cost = 1_000 * Decimal(4) + 4_000 * Decimal(32) + 1_000 * Decimal(5)
    cached = 1_000 * Decimal("0.4") + 2_000 * Decimal("0.4") + 1_000 * Decimal("0.5")
    output = 1_000 * Decimal(16) + 2_000 * Decimal(64)
    assert_usd(priced["input_cost_usd"], input_cost / MTOK)
    assert_usd(priced["cache_read_cost_usd"], cached / MTOK)
    assert_usd(priced["output_cost_usd"], output / MTOK)
    assert_usd(priced["cost_usd"], (input_cost + cached + output) / MTOK)


def test_a_class_without_its_own_rate_is_priced_as_its_parent(catalog: PriceCatalog) -> None:
    """gpt-audio has audio rates but no cache-read rate: cached audio pays the audio input rate.
    gpt-4o has no audio rate: audio is input, cached audio a cache read."""
    audio = {"input_tokens": 1_000, "cache_read_tokens": 300, "input_audio_tokens": 500, "cache_audio_read_tokens": 300}
    priced = catalog.price(
        frame(
            [
                {"provider": "openai", "model_requested": "gpt-audio", **audio},
                {"provider": "openai", "model_requested": "gpt-4o", **audio},
            ]
        )
    )
    assert_usd(priced["cost_usd"].iat[0], (500 * Decimal("2.5") + 500 * Decimal(32)) / MTOK)
    assert_usd(priced["cache_read_cost_usd"].iat[0], 300 * Decimal(32) / MTOK)
    assert_usd(priced["cost_usd"].iat[1], (700 * Decimal("2.5") + 300 * Decimal("1.25")) / MTOK)


#: Models whose prices have the classes' own rates (1-hour writes, audio and cached audio, images
#: and cached images, image output), where genai-prices' calc_price prices every class once.
DETAIL_MODELS = [
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-haiku-4-5"),
    ("openai", "gpt-realtime"),
    ("openai", "gpt-image-1"),
    ("google", "gemini-2.5-flash"),
    ("google", "gemini-2.5-flash-image"),
]


def random_detailed_spans(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(DETAIL_MODELS), n)
    inputs = rng.integers(0, 400_000, n)
    audio = (inputs * rng.random(n) * 0.4).astype(np.int64)
    image = ((inputs - audio) * rng.random(n) * 0.4).astype(np.int64)
    text = inputs - audio - image
    cached_text = (text * rng.random(n) * 0.5).astype(np.int64)
    writes = ((text - cached_text) * rng.random(n) * 0.5).astype(np.int64)
    one_hour = (writes * rng.random(n)).astype(np.int64)
    five_minutes = ((writes - one_hour) * rng.random(n)).astype(np.int64)
    cached_audio = (audio * rng.random(n)).astype(np.int64)
    cached_image = (image * rng.random(n)).astype(np.int64)
    outputs = rng.integers(0, 30_000, n)
    reasoning = (outputs * rng.random(n) * 0.3).astype(np.int64)
    output_audio = ((outputs - reasoning) * rng.random(n) * 0.5).astype(np.int64)
    output_image = ((outputs - reasoning - output_audio) * rng.random(n)).astype(np.int64)
    rows = pd.DataFrame(
        {
            "provider": [DETAIL_MODELS[i][0] for i in which],
            "model_requested": [DETAIL_MODELS[i][1] for i in which],
            "start_time": pd.Timestamp("2026-11-01T12:00:00Z"),
            "input_tokens": inputs,
            "cache_read_tokens": cached_text + cached_audio + cached_image,
            "cache_write_tokens": writes,
            "cache_write_5m_tokens": five_minutes,
            "cache_write_1h_tokens": one_hour,
            "input_audio_tokens": audio,
            "cache_audio_read_tokens": cached_audio,
            "input_image_tokens": image,
            "cache_image_read_tokens": cached_image,
            "output_tokens": outputs,
            "reasoning_tokens": reasoning,
            "output_audio_tokens": output_audio,
            "output_image_tokens": output_image,
        }
    )
    return frame(rows.to_dict("records"))


def test_costs_equal_calc_price_with_every_detail(catalog: PriceCatalog) -> None:
    spans = random_detailed_spans(600, seed=11)
    assert not [m for m in validate_items([_span_dict(row) for row in spans.to_dict("records")]).invalid]
    priced = catalog.price(spans)
    expected = []
    for row in spans.itertuples(index=False):
        usage = Usage(
            input_tokens=row.input_tokens,
            cache_read_tokens=row.cache_read_tokens,
            cache_write_tokens=row.cache_write_tokens,
            cache_write_5m_tokens=row.cache_write_5m_tokens,
            cache_write_1h_tokens=row.cache_write_1h_tokens,
            input_audio_tokens=row.input_audio_tokens,
            cache_audio_read_tokens=row.cache_audio_read_tokens,
            input_image_tokens=row.input_image_tokens,
            cache_image_read_tokens=row.cache_image_read_tokens,
            output_tokens=row.output_tokens,
            output_reasoning_tokens=row.reasoning_tokens,
            output_audio_tokens=row.output_audio_tokens,
            output_image_tokens=row.output_image_tokens,
        )
        price = calc_price(
            usage, row.model_requested, provider_id=row.provider, genai_request_timestamp=row.start_time.to_pydatetime()
        )
        expected.append(float(price.total_price))
    np.testing.assert_allclose(priced["cost_usd"], expected, rtol=1e-12, atol=0)
    assert (spans["cache_write_1h_tokens"] > 0).sum() > 50 and (spans["cache_image_read_tokens"] > 0).sum() > 300


def _span_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    tokens = {name: int(row[name]) for name in (*TOKEN_FIELDS, *TOKEN_DETAIL_FIELDS)}
    return span(provider=row["provider"], model_requested=row["model_requested"], **tokens)


def test_json_schema_carries_the_details_and_the_revision() -> None:
    schema = orjson.loads(SCHEMA_PATH.read_bytes())
    for name in TOKEN_DETAIL_FIELDS:
        field = schema["properties"][name]
        assert (field["type"], field["minimum"], field["default"]) == ("integer", 0, 0), name
        assert "Part of" in field["description"], name
    assert schema["$comment"] == "revision 1.1" and set(TOKEN_DETAIL_FIELDS).isdisjoint(schema.get("required", []))


def test_details_are_stored_by_the_workers_arrow_insert(catalog: PriceCatalog, tmp_path: Path) -> None:
    """The worker's rows as Arrow into a migrated chDB (migration 0009's columns), read back."""
    spans = [
        one_span(
            {
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-realtime",
                "gen_ai.usage.input_tokens": 1_000,
                "gen_ai.usage.output_tokens": 300,
                "gen_ai.usage.cache_read.input_tokens": 400,
                "spanline.input_audio_tokens": 700,
                "spanline.cache_audio_read_tokens": 300,
                "spanline.output_audio_tokens": 250,
            }
        )
    ]
    value = orjson.dumps([{**span, "tenant_id": "acme"} for span in spans])
    table = process_batch(Batch(0, 0, 0, [Message(0, 0, value, "otlp")], replayed=False), "spans", catalog).table
    with migrated_chdb(tmp_path / "chdb", "classes", ttl_days=3650) as client:  # the spans are from 2025
        client.insert_arrow("classes.spans", table, settings=DEDUP_SETTINGS)
        names = ", ".join(TOKEN_DETAIL_FIELDS)
        (back,) = client.query(f"SELECT {names}, cost_usd FROM classes.spans").result_rows
    assert dict(zip(TOKEN_DETAIL_FIELDS, back[:-1], strict=True)) == {
        **dict.fromkeys(TOKEN_DETAIL_FIELDS, 0),
        "input_audio_tokens": 700,
        "cache_audio_read_tokens": 300,
        "output_audio_tokens": 250,
    }
    # 200 text at $4 + 400 uncached audio at $32 + 100 cached text and 300 cached audio at $0.40,
    # 50 text output at $16 + 250 audio at $64
    expected = 200 * 4 + 400 * 32 + 400 * Decimal("0.4") + 50 * 16 + 250 * 64
    assert_usd(back[-1], expected / MTOK)
