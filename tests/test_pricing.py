"""Cost enrichment: the vectorised catalog agrees with genai_prices.calc_price, span by span.

The expected costs are computed independently, one ``calc_price`` call per span, from the same
token counts (reasoning passed as genai-prices' ``output_reasoning_tokens``).
"""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from datetime import time as clock
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import DataSnapshot, set_custom_snapshot
from genai_prices.types import (
    ClauseEquals,
    ConditionalPrice,
    ModelInfo,
    ModelPrice,
    Provider,
    StartDateConstraint,
    TimeOfDateConstraint,
)

from spanline.contract.schema import TOKEN_FIELDS
from spanline.errors import ConfigError
from spanline.streams.pricing import PRICE_COLUMNS, PriceCatalog
from spanline.streams.pricing.resolve import ModelResolver
from spanline.streams.pricing.snapshot import CATALOG_LABEL as CATALOG
from spanline.streams.pricing.snapshot import flatten

EXAMPLE = Path(__file__).resolve().parents[1] / "streams" / "pricing" / "overrides.example.yaml"

# (provider, model_response, model_requested): cached input, anthropic cache writes and a 200k
# context tier, reasoning (o3 / gpt-5 at the output rate, sonar-deep-research at its own rate),
# o3's price cut on 2025-06-10, DeepSeek's daily windows and dated prices, Perplexity's
# per-request fee, a provider inferred from the model name, Azure falling back to OpenAI's prices.
MODELS = [
    ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
    ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("openai", "o3-2025-04-16", "o3"),
    ("openai", "", "gpt-5"),
    ("google", "gemini-2.5-pro", ""),
    ("deepseek", "deepseek-v4-flash", ""),
    ("perplexity", "sonar-deep-research", ""),
    ("perplexity", "sonar", "sonar"),
    ("", "claude-3-5-sonnet-20241022", ""),
    ("azure", "gpt-4o", "gpt-4o"),
]


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog.load()


def spans_frame(rows: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """A batch as the worker builds it: one row per span, ms UTC timestamps."""
    base: dict[str, object] = {
        "tenant_id": "acme",
        "provider": "",
        "model_response": "",
        "model_requested": "",
        "start_time": "2026-05-01T00:00:00Z",
        **{name: 0 for name in TOKEN_FIELDS},
    }
    frame = pd.DataFrame([{**base, **row} for row in rows])
    frame["start_time"] = pd.to_datetime(frame["start_time"], utc=True, format="ISO8601").astype("datetime64[ms, UTC]")
    return frame


def random_spans(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(MODELS), n)
    low, high = pd.Timestamp("2025-01-01", tz="UTC").value, pd.Timestamp("2026-11-20", tz="UTC").value
    starts = pd.to_datetime(rng.integers(low, high, n), utc=True)
    # half the spans in 0..190k input tokens, half in 190k..400k: both sides of the 200k tiers
    inputs = np.where(rng.random(n) < 0.5, rng.integers(0, 190_000, n), rng.integers(190_000, 400_000, n))
    cache_read = (inputs * rng.random(n) * 0.6).astype(np.int64)
    cache_write = ((inputs - cache_read) * rng.random(n) * 0.4).astype(np.int64)
    outputs = rng.integers(0, 30_000, n)
    reasoning = (outputs * rng.random(n) * 0.8).astype(np.int64)
    frame = pd.DataFrame(
        {
            "tenant_id": rng.choice(["acme", "globex"], n),
            "provider": [MODELS[i][0] for i in which],
            "model_response": [MODELS[i][1] for i in which],
            "model_requested": [MODELS[i][2] for i in which],
            "start_time": starts,
            "input_tokens": inputs,
            "output_tokens": outputs,
            "cache_read_tokens": cache_read,
            "cache_write_tokens": cache_write,
            "reasoning_tokens": reasoning,
        }
    )
    frame["start_time"] = frame["start_time"].astype("datetime64[ms, UTC]")
    return frame


def edge_spans() -> pd.DataFrame:
    """Exact edges: the 200k tier threshold (strictly above) and o3's change date at midnight UTC."""
    return spans_frame(
        [
            {
                "provider": "anthropic",
                "model_response": "claude-sonnet-4-5",
                "start_time": "2026-03-01T12:00:00Z",
                "input_tokens": tokens,
                "output_tokens": 100,
                "cache_write_tokens": 1_000,
            }
            for tokens in (200_000, 200_001)
        ]
        + [
            {
                "provider": "openai",
                "model_requested": "o3",
                "start_time": stamp,
                "input_tokens": 1_000,
                "output_tokens": 500,
                "reasoning_tokens": 400,
            }
            for stamp in ("2025-06-09T23:59:59.999Z", "2025-06-10T00:00:00Z")
        ]
    )


def reference(spans: pd.DataFrame) -> pd.DataFrame:
    """calc_price span by span: input, output and total price as floats."""
    out = []
    for row in spans.itertuples(index=False):
        usage = Usage(
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cache_read_tokens=row.cache_read_tokens,
            cache_write_tokens=row.cache_write_tokens,
            output_reasoning_tokens=row.reasoning_tokens,
        )
        price = calc_price(
            usage,
            row.model_response or row.model_requested,
            provider_id=row.provider or None,
            genai_request_timestamp=row.start_time.to_pydatetime(),
        )
        out.append((float(price.input_price), float(price.output_price), float(price.total_price)))
    return pd.DataFrame(out, columns=["input", "output", "total"], index=spans.index)


def assert_matches_calc_price(priced: pd.DataFrame, spans: pd.DataFrame) -> None:
    expected = reference(spans)
    input_cost = priced["input_cost_usd"] + priced["cache_read_cost_usd"] + priced["cache_write_cost_usd"]
    np.testing.assert_allclose(input_cost, expected["input"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(priced["output_cost_usd"], expected["output"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(priced["cost_usd"], expected["total"], rtol=1e-12, atol=0)


def test_costs_equal_calc_price_on_2000_random_spans(catalog: PriceCatalog) -> None:
    spans = pd.concat([random_spans(2_000, seed=7), edge_spans()], ignore_index=True)
    priced = catalog.price(spans)

    assert list(priced.columns) == list(PRICE_COLUMNS)
    assert priced.index.equals(spans.index)
    assert priced["cost_known"].dtype == np.uint8 and priced["cost_usd"].dtype == np.float64
    assert (priced["cost_known"] == 1).all() and (priced["price_source"] == "genai-prices").all()
    assert_matches_calc_price(priced, spans)
    # every case the sample is meant to cover is really in it
    versions = set(priced["price_version"])
    assert {
        f"{CATALOG} openai/o3",
        f"{CATALOG} openai/o3 since 2025-06-10",
        f"{CATALOG} deepseek/deepseek-v4-flash daily 01:00-04:00 UTC",
        f"{CATALOG} deepseek/deepseek-v4-flash since 2026-09-10",
        f"{CATALOG} perplexity/sonar",
        f"{CATALOG} perplexity/sonar-deep-research",
        f"{CATALOG} anthropic/claude-3-5-sonnet",
    } <= versions
    tiered = spans["model_requested"].eq("claude-sonnet-4-5") | spans["model_response"].eq("gemini-2.5-pro")
    assert (spans.loc[tiered, "input_tokens"] > 200_000).sum() > 50
    assert (spans.loc[tiered, "input_tokens"] <= 200_000).sum() > 50
    assert (spans["cache_write_tokens"] > 0).sum() > 1_000 and (spans["reasoning_tokens"] > 0).sum() > 1_000


def test_tier_is_a_cliff_on_total_input_tokens(catalog: PriceCatalog) -> None:
    spans = spans_frame(
        [
            {
                "provider": "anthropic",
                "model_requested": "claude-sonnet-4-5",
                "start_time": "2026-03-01",
                "input_tokens": tokens,
                "cache_read_tokens": 150_000,
                "output_tokens": 1_000_000,
            }
            for tokens in (200_000, 200_001)
        ]
    )
    priced = catalog.price(spans)
    # the cached tokens count towards the threshold; above it every kind pays the tier rate
    assert priced["output_cost_usd"].tolist() == pytest.approx([15.0, 22.5], rel=1e-12)
    assert priced["cache_read_cost_usd"].tolist() == pytest.approx([0.045, 0.09], rel=1e-12)
    assert_matches_calc_price(priced, spans)


def test_conditional_prices_follow_genai_prices_in_any_order() -> None:
    """Dated and daily prices in deliberately awkward orders: the last active one wins, else the first."""

    def price(usd: str) -> ModelPrice:
        return ModelPrice(input_mtok=Decimal(usd), output_mtok=Decimal(usd) * 2)

    def dated(day: date, usd: str) -> ConditionalPrice:
        return ConditionalPrice(constraint=StartDateConstraint(start_date=day), prices=price(usd))

    def daily(begin: clock, end: clock, usd: str) -> ConditionalPrice:
        return ConditionalPrice(constraint=TimeOfDateConstraint(start_time=begin, end_time=end), prices=price(usd))

    shuffled = [
        dated(date(2026, 3, 1), "9"),
        daily(clock(22), clock(2), "5"),
        dated(date(2026, 1, 1), "1"),
        dated(date(2026, 2, 1), "2"),
        daily(clock(10), clock(12), "3"),
    ]
    # an unconditional price after a window: the window can never win, and the first entry never applies
    shadowed = [daily(clock(10), clock(12), "3"), ConditionalPrice(prices=price("4")), dated(date(2026, 1, 1), "1")]
    provider = Provider(
        id="p",
        name="P",
        api_pattern="https://p",
        models=[
            ModelInfo(id="m", match=ClauseEquals(equals="m"), prices=shuffled),
            ModelInfo(id="n", match=ClauseEquals(equals="n"), prices=shadowed),
        ],
    )

    def snapshot() -> DataSnapshot:
        return DataSnapshot(providers=[provider], from_auto_update=False)

    flat = flatten([provider])
    catalog = PriceCatalog(flat.table, ModelResolver(snapshot, flat.series_of_model), {})
    stamps = pd.date_range("2025-12-30", "2026-03-03", freq="37min", tz="UTC")
    spans = spans_frame(
        [
            {
                "provider": "p",
                "model_requested": model,
                "start_time": stamp,
                "input_tokens": 1_000_000,
                "output_tokens": 1_000_000,
            }
            for stamp in stamps
            for model in ("m", "n")
        ]
    )
    priced = catalog.price(spans)
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    expected = [
        float(snapshot().calc(usage, model, "p", None, stamp.to_pydatetime()).total_price)
        for stamp in stamps
        for model in ("m", "n")
    ]
    np.testing.assert_allclose(priced["cost_usd"], expected, rtol=1e-12, atol=0)
    assert set(np.round(priced["cost_usd"], 6)) == {27.0, 15.0, 12.0, 3.0, 6.0, 9.0}


def test_model_response_is_tried_before_model_requested(catalog: PriceCatalog) -> None:
    spans = spans_frame(
        [
            {"provider": "openai", "model_response": "gpt-4o-2024-05-13", "model_requested": "gpt-4o"},
            {"provider": "openai", "model_response": "my-gateway-alias", "model_requested": "gpt-4o"},
            {"provider": "openai", "model_response": None, "model_requested": "gpt-4o"},
        ]
    )
    spans["input_tokens"] = 1_000_000
    priced = catalog.price(spans)
    assert priced["input_cost_usd"].tolist() == pytest.approx([5.0, 2.5, 2.5], rel=1e-12)
    assert priced["price_version"].tolist() == [
        f"{CATALOG} openai/gpt-4o-2024-05-13",
        f"{CATALOG} openai/gpt-4o",
        f"{CATALOG} openai/gpt-4o",
    ]


def test_unknown_models_are_flagged_and_spans_without_tokens_cost_a_known_zero(
    catalog: PriceCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    spans = spans_frame(
        [
            {
                "provider": "self-hosted",
                "model_requested": "llama-3.1-70b-instruct",
                "input_tokens": 500,
                "output_tokens": 20,
            },  # unknown, has tokens
            {"provider": "", "model_requested": "", "input_tokens": 10},  # tokens but no model
            {"provider": "self-hosted", "model_requested": "llama-3.1-70b-instruct"},  # failed call, no tokens
            {"provider": None, "model_response": None, "model_requested": None},  # a tool span
            {"provider": "openai", "model_requested": "gpt-4o"},  # known model, no tokens
        ]
    )
    with caplog.at_level(logging.WARNING, logger="spanline.streams.pricing"):
        priced = catalog.price(spans)
        catalog.price(spans)
    assert priced["price_source"].tolist() == ["unknown", "unknown", "none", "none", "genai-prices"]
    assert priced["cost_known"].tolist() == [0, 0, 1, 1, 1]
    assert (priced[[c for c in PRICE_COLUMNS if c.endswith("_usd")]] == 0.0).all().all()
    assert priced["price_version"].tolist()[:4] == [CATALOG, CATALOG, "", ""]
    warnings = [r for r in caplog.records if "llama-3.1-70b-instruct" in r.getMessage()]
    assert len(warnings) == 1  # resolved once, cached


def test_input_shapes_ns_timestamps_missing_names_index_and_empty_batches(catalog: PriceCatalog) -> None:
    spans = random_spans(300, seed=3)
    spans.index = pd.Index(np.arange(len(spans))[::-1] * 10)
    by_ms = catalog.price(spans)
    as_ns = spans.assign(start_time=spans["start_time"].astype("datetime64[ns, UTC]"))
    pd.testing.assert_frame_equal(catalog.price(as_ns), by_ms)
    assert by_ms.index.equals(spans.index)
    shuffled = spans.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(catalog.price(shuffled), by_ms.loc[shuffled.index])

    empty = catalog.price(spans.iloc[:0])
    assert list(empty.columns) == list(PRICE_COLUMNS) and len(empty) == 0


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "overrides.yaml"
    path.write_text(text)
    return path


OVERRIDES = """
- provider: self-hosted
  model: llama-3.1-70b-instruct
  input_mtok: 0.2
  output_mtok: 0.4
- provider: openai
  model: gpt-4o
  valid_from: 2026-03-01
  input_mtok: 2.0
  output_mtok: 8.0
- provider: openai
  model: gpt-4o
  tenant: acme
  valid_from: 2026-01-01T00:00:00
  input_mtok: 1.5
  output_mtok: 6.0
  cache_read_mtok: 0.5
- provider: OpenAI
  model: gpt-4o
  tenant: acme
  valid_from: 2026-06-01
  input_mtok: 1.0
  output_mtok: 4.0
"""


def test_overrides_tenant_beats_global_beats_catalog_with_history(tmp_path: Path) -> None:
    path = write(tmp_path, OVERRIDES)
    catalog = PriceCatalog.load(path)
    gpt4o = {
        "provider": "openai",
        "model_response": "gpt-4o-2024-08-06",
        "model_requested": "gpt-4o",
        "input_tokens": 1_000_000,
        "cache_read_tokens": 400_000,
        "cache_write_tokens": 100_000,
        "output_tokens": 1_000_000,
        "reasoning_tokens": 300_000,
    }
    spans = spans_frame(
        [
            {**gpt4o, "tenant_id": "acme", "start_time": "2025-12-31T23:59:59Z"},  # catalog
            {**gpt4o, "tenant_id": "acme", "start_time": "2026-01-01T00:00:00Z"},  # acme #2
            {**gpt4o, "tenant_id": "acme", "start_time": "2026-06-01T00:00:00Z"},  # acme #3
            {**gpt4o, "tenant_id": "globex", "start_time": "2026-02-28T23:59:59Z"},  # catalog
            {**gpt4o, "tenant_id": "globex", "start_time": "2026-03-01T00:00:00Z"},  # every tenant #1
            {
                **gpt4o,
                "tenant_id": "acme",
                "provider": "azure",
                "model_response": "gpt-4o",
                "start_time": "2026-07-01T00:00:00Z",
            },  # azure: another contract
            {
                "tenant_id": "globex",
                "provider": "self-hosted",
                "model_requested": "llama-3.1-70b-instruct",
                "model_response": "Llama-3.1-70B-Instruct",
                "input_tokens": 1_000_000,
                "output_tokens": 500_000,
                "start_time": "2024-01-01T00:00:00Z",
            },  # every tenant #0
        ]
    )
    priced = catalog.price(spans)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert priced["price_source"].tolist() == [
        "genai-prices",
        "override",
        "override",
        "genai-prices",
        "override",
        "genai-prices",
        "override",
    ]
    assert priced["price_version"].tolist()[1:5] == [
        f"override {digest} #2",
        f"override {digest} #3",
        f"{CATALOG} openai/gpt-4o",
        f"override {digest} #1",
    ]
    # uncached input 0.5M; cache reads 0.4M at their own rate or the input rate; cache writes 0.1M at
    # the input rate (no rate given); output 1M (reasoning included, same rate)
    assert priced["input_cost_usd"].tolist()[1:5] == pytest.approx([0.75, 0.5, 1.25, 1.0], rel=1e-12)
    assert priced["cache_read_cost_usd"].tolist()[1:5] == pytest.approx([0.2, 0.4, 0.5, 0.8], rel=1e-12)
    assert priced["cache_write_cost_usd"].tolist()[1:5] == pytest.approx([0.15, 0.1, 0.25, 0.2], rel=1e-12)
    assert priced["output_cost_usd"].tolist()[1:5] == pytest.approx([6.0, 4.0, 10.0, 8.0], rel=1e-12)
    assert priced["cost_usd"].iloc[6] == pytest.approx(0.2 + 0.2, rel=1e-12)
    catalog_rows = spans.iloc[[0, 3, 5]]
    assert_matches_calc_price(priced.iloc[[0, 3, 5]], catalog_rows)


def test_example_overrides_file_is_valid_and_prices_its_models() -> None:
    catalog = PriceCatalog.load(EXAMPLE)
    spans = spans_frame(
        [
            {
                "tenant_id": "anyone",
                "provider": "self-hosted",
                "model_requested": "llama-3.1-70b-instruct",
                "input_tokens": 1_000_000,
                "output_tokens": 1_000_000,
                "start_time": stamp,
            }
            for stamp in ("2026-06-30T23:59:59Z", "2026-07-01T00:00:00Z")
        ]
        + [
            {
                "tenant_id": "acme",
                "provider": "openai",
                "model_requested": "gpt-4o",
                "input_tokens": 1_000_000,
                "start_time": "2026-02-01T00:00:00Z",
            }
        ]
    )
    priced = catalog.price(spans)
    assert priced["cost_usd"].tolist() == pytest.approx([0.4, 0.5, 2.0], rel=1e-12)
    assert (priced["price_source"] == "override").all()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            (
                "- {provider: a, model: m, input_mtok: 1, output_mtok: 1}\n"
                "- {provider: a, model: n, input_mtok: -1, output_mtok: 1}\n"
            ),
            ["entry 1", "'input_mtok'", "greater than"],
        ),
        ("- {provider: a, model: m, input_mtok: 1}\n", ["entry 0", "'output_mtok'", "required"]),
        ("- {provider: a, model: m, tennant: x, input_mtok: 1, output_mtok: 1}\n", ["entry 0", "'tennant'"]),
        (
            "- {provider: a, model: m, valid_from: someday, input_mtok: 1, output_mtok: 1}\n",
            ["entry 0", "'valid_from'"],
        ),
        ("- {provider: a, model: m, input_mtok: .nan, output_mtok: 1}\n", ["entry 0", "'input_mtok'", "finite"]),
        ("- {provider: a, model: m, input_mtok: 1, output_mtok: true}\n", ["entry 0", "'output_mtok'", "number"]),
        ("- 42\n", ["entry 0", "the entry"]),
        ("provider: a\nmodel: m\n", ["expected a YAML list"]),
        ("- {provider: a, model: [unclosed\n", ["not valid YAML"]),
        (
            (
                "- {provider: a, model: m, input_mtok: 1, output_mtok: 1}\n"
                "- {provider: A, model: M, input_mtok: 2, output_mtok: 2}\n"
            ),
            ["entries 0 and 1", "a/m"],
        ),
    ],
)
def test_bad_overrides_file_raises_config_error_naming_entry_and_field(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        PriceCatalog.load(path)
    message = str(raised.value)
    assert str(path) in message or "price overrides" in message
    for part in expected:
        assert part in message, message


def test_missing_overrides_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        PriceCatalog.load(tmp_path / "absent.yaml")


def test_prices_stay_offline_and_ignore_a_snapshot_installed_by_update_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("pricing opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    catalog = PriceCatalog.load()
    spans = spans_frame(
        [{"provider": "openai", "model_requested": "gpt-4o", "input_tokens": 1_000_000, "start_time": "2026-05-01"}]
    )
    # what UpdatePrices does after a fetch: calc_price now sees the new (here: empty) data...
    set_custom_snapshot(DataSnapshot(providers=[], from_auto_update=True))
    try:
        with pytest.raises(LookupError):
            calc_price(
                Usage(input_tokens=1),
                "gpt-4o",
                provider_id="openai",
                genai_request_timestamp=datetime(2026, 5, 1, tzinfo=UTC),
            )
        # ...the catalog does not
        assert catalog.price(spans)["cost_usd"].tolist() == [2.5]
        assert PriceCatalog.load().price(spans)["cost_usd"].tolist() == [2.5]
    finally:
        set_custom_snapshot(None)
