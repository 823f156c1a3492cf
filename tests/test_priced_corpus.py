"""A hand-priced corpus through the worker's real path: decode, validate, price, store in chDB.

Every expected cost is computed here, with Decimal, from per-million prices copied from the
providers' pages (or the dated copies of them cited next to each price, checked 2026-12-06), never
from genai-prices or the corrections file: a wrong correction fails this test as surely as a
wrong catalog price. The corpus covers each class the catalog got wrong (issue 14): a long-context
tier, price history (the gpt-4o alias before it moved, DeepSeek's launch promotion, price changes
and an off-peak discount with a start and an end), a thinking-output rate, changes at 16:00 UTC,
and router-style names; prices on both sides of every change, to the millisecond.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from spanline.streams.batcher import Batch, Message
from spanline.streams.pricing import PriceCatalog
from spanline.streams.process import process_batch
from spanline.streams.sinks import DEDUP_SETTINGS
from tests.support.chdb import migrated_chdb

DB = "spanline_corpus"
TOPIC = "spans"
MTOK = Decimal(1_000_000)
TOLERANCE = Decimal("1e-9")


@dataclass(frozen=True)
class Page:
    """USD per million tokens as a provider page states them; None = that kind pays the input rate."""

    source: str
    input: str
    output: str
    cache_read: str | None = None
    cache_write: str | None = None
    thinking_output: str | None = None  # every output token of a response made with thinking on


ANTHROPIC = "https://docs.anthropic.com/en/docs/about-claude/pricing"
OPENAI = "https://platform.openai.com/docs/pricing (transcribed at https://chatgptpricing-akr.pages.dev/api-pricing)"
OPENAI_ALIAS = "https://platform.openai.com/docs/models/gpt-4o (gpt-4o -> gpt-4o-2024-05-13 until 2024-10-02)"
DEEPSEEK = "https://api-docs.deepseek.com/quick_start/pricing"
DEEPSEEK_V32 = "https://api-docs.deepseek.com/news/news250929 (https://benchlm.ai/blog/posts/deepseek-api-pricing)"
GEMINI_25_PREVIEW = "https://huggingface.co/philschmid (Google's launch of gemini-2.5-flash-preview-04-17)"
GEMINI_15_FLASH = "https://bigbullcloud.com/blog/google-gemini-api-cost-structure"
MISTRAL = "https://deploybase.ai/articles/mistral-api-pricing"
BEDROCK = (
    "https://aws.amazon.com/bedrock/pricing/ (transcribed at https://deploybase.ai/articles/amazon-bedrock-pricing)"
)

PAGES: dict[str, Page] = {
    # Anthropic: Claude Sonnet 4 long context: the whole request at the > 200K rate, caching multipliers on top
    "sonnet-4": Page(ANTHROPIC, "3", "15", cache_read="0.30", cache_write="3.75"),
    "sonnet-4 >200K": Page(ANTHROPIC, "6", "22.50", cache_read="0.60", cache_write="7.50"),
    "sonnet-3.5": Page(ANTHROPIC, "3", "15", cache_read="0.30", cache_write="3.75"),
    "haiku-3.5": Page(ANTHROPIC, "0.80", "4", cache_read="0.08", cache_write="1"),
    # OpenAI
    "gpt-4o-2024-05-13": Page(OPENAI_ALIAS, "5", "15"),
    "gpt-4o": Page(OPENAI, "2.50", "10", cache_read="1.25"),
    "gpt-4o-mini": Page(OPENAI, "0.15", "0.60", cache_read="0.075"),
    "text-embedding-3-small": Page(OPENAI, "0.02", "0"),
    # DeepSeek (deepseek-chat unless named)
    "ds v3 promotion": Page(DEEPSEEK, "0.14", "0.28", cache_read="0.014"),
    "ds v3": Page(DEEPSEEK, "0.27", "1.10", cache_read="0.07"),
    "ds off-peak": Page(DEEPSEEK, "0.135", "0.55", cache_read="0.035"),
    "ds r1": Page(DEEPSEEK, "0.55", "2.19", cache_read="0.14"),
    "ds v3.1": Page(DEEPSEEK, "0.56", "1.68", cache_read="0.07"),
    "ds v3.2": Page(DEEPSEEK_V32, "0.28", "0.42", cache_read="0.028"),
    # Google
    "gemini-2.5-flash-preview": Page(GEMINI_25_PREVIEW, "0.15", "0.60", thinking_output="3.50"),
    "gemini-1.5-flash": Page(GEMINI_15_FLASH, "0.075", "0.30"),
    "gemini-1.5-flash >128K": Page(GEMINI_15_FLASH, "0.15", "0.60"),
    # Mistral, AWS Bedrock
    "mistral-large": Page(MISTRAL, "2", "6"),
    "bedrock haiku-3.5": Page(BEDROCK, "0.80", "4"),
}


@dataclass(frozen=True)
class Case:
    label: str
    provider: str
    model: str
    at: str
    page: str | None  # None: no price may exist, the span must be flagged
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    response: str = ""


def sonnet_4(label: str, tokens: int, **kw: Any) -> Case:
    """The tier is the page's rule applied here: more than 200,000 input tokens, cached ones included."""
    page = "sonnet-4 >200K" if tokens > 200_000 else "sonnet-4"
    model = kw.pop("model", "claude-sonnet-4-20250514")
    return Case(label, kw.pop("provider", "anthropic"), model, kw.pop("at", "2025-10-01T12:00:00Z"), page, tokens, **kw)


def deepseek(label: str, at: str, page: str, model: str = "deepseek-chat", **kw: Any) -> Case:
    return Case(label, "deepseek", model, at, page, 120_000, 9_000, cache_read=80_000, **kw)


CORPUS: list[Case] = [
    # --- a long-context tier the catalog lacks (Claude Sonnet 4 above 200K input tokens)
    sonnet_4("sonnet-4 199,999 in", 199_999, output=1_000),
    sonnet_4("sonnet-4 exactly 200,000 in: not above", 200_000, output=1_000),
    sonnet_4("sonnet-4 200,001 in: the whole request at the tier", 200_001, output=1_000),
    sonnet_4(
        "sonnet-4 350K with cache reads and writes", 350_000, output=2_000, cache_read=100_000, cache_write=20_000
    ),
    sonnet_4("sonnet-4 150K with cache reads", 150_000, output=3_000, cache_read=60_000),
    sonnet_4("sonnet-4 cached tokens count towards 200K", 210_000, output=500, cache_read=190_000),
    sonnet_4("sonnet-4 alias name", 500_000, output=4_000, model="claude-sonnet-4-0"),
    sonnet_4(
        "sonnet-4 router-style name", 250_000, output=800, model="anthropic/claude-sonnet-4-20250514", provider=""
    ),
    # --- the gpt-4o alias before it moved to gpt-4o-2024-08-06
    Case("gpt-4o alias, June 2024", "openai", "gpt-4o", "2024-06-01T08:00:00Z", "gpt-4o-2024-05-13", 12_000, 800),
    Case(
        "gpt-4o alias, last ms before the move",
        "openai",
        "gpt-4o",
        "2024-10-01T23:59:59.999Z",
        "gpt-4o-2024-05-13",
        30_000,
        2_000,
    ),
    Case("gpt-4o alias, first ms after the move", "openai", "gpt-4o", "2024-10-02T00:00:00Z", "gpt-4o", 30_000, 2_000),
    Case(
        "gpt-4o answered by the 08-06 snapshot before the move",
        "openai",
        "gpt-4o",
        "2024-09-01T10:00:00Z",
        "gpt-4o",
        5_000,
        700,
        response="gpt-4o-2024-08-06",
    ),
    Case(
        "gpt-4o answered by the 05-13 snapshot after the move",
        "openai",
        "gpt-4o",
        "2024-12-01T10:00:00Z",
        "gpt-4o-2024-05-13",
        5_000,
        700,
        response="gpt-4o-2024-05-13",
    ),
    Case(
        "gpt-4o with cached input",
        "openai",
        "gpt-4o",
        "2025-03-01T09:00:00Z",
        "gpt-4o",
        50_000,
        1_200,
        cache_read=20_000,
    ),
    Case(
        "gpt-4o-mini with cached input",
        "openai",
        "gpt-4o-mini",
        "2025-03-01T09:00:00Z",
        "gpt-4o-mini",
        80_000,
        900,
        40_960,
    ),
    Case("gpt-4o-mini snapshot", "openai", "gpt-4o-mini-2024-07-18", "2024-11-11T11:11:11Z", "gpt-4o-mini", 3_000, 300),
    Case("embedding", "openai", "text-embedding-3-small", "2025-05-05T05:05:05Z", "text-embedding-3-small", 8_000),
    # --- provider-prefixed and router-style names
    Case(
        "openai/ prefix, no provider", "", "openai/gpt-4o-2024-08-06", "2025-01-01T00:00:00Z", "gpt-4o", 10_000, 1_000
    ),
    Case(
        "openai/ prefix, same provider",
        "openai",
        "openai/gpt-4o-mini",
        "2025-01-01T00:00:00Z",
        "gpt-4o-mini",
        10_000,
        1_000,
    ),
    Case(
        "anthropic/ prefix", "", "anthropic/claude-3-5-haiku-20241022", "2025-02-01T00:00:00Z", "haiku-3.5", 9_000, 600
    ),
    Case(
        "vertex_ai/ prefix",
        "",
        "vertex_ai/gemini-1.5-flash-002",
        "2025-02-01T00:00:00Z",
        "gemini-1.5-flash",
        64_000,
        2_000,
    ),
    Case("mistral/ prefix", "", "mistral/mistral-large-latest", "2025-02-01T00:00:00Z", "mistral-large", 7_000, 1_500),
    Case(
        "bedrock/ prefix",
        "",
        "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0",
        "2025-02-01T00:00:00Z",
        "bedrock haiku-3.5",
        20_000,
        1_000,
    ),
    # --- DeepSeek: promotion, changes at 16:00 UTC, an off-peak window that started and ended
    deepseek("V3 promotion", "2025-01-10T12:00:00Z", "ds v3 promotion"),
    deepseek("V3 promotion, last ms", "2025-02-08T15:59:59.999Z", "ds v3 promotion"),
    deepseek("V3 full price, first ms (16:00 UTC)", "2025-02-08T16:00:00Z", "ds v3"),
    deepseek("V3 in off-peak hours before the discount existed", "2025-02-20T20:00:00Z", "ds v3"),
    deepseek("V3 one ms before the first off-peak window", "2025-02-26T16:29:59.999Z", "ds v3"),
    deepseek("V3 first off-peak window opens", "2025-02-26T16:30:00Z", "ds off-peak"),
    deepseek("V3 off-peak past midnight", "2025-03-20T00:29:59.999Z", "ds off-peak"),
    deepseek("V3 off-peak closes at 00:30", "2025-03-20T00:30:00Z", "ds v3"),
    deepseek("V3 off-peak in June", "2025-06-10T16:30:00Z", "ds off-peak"),
    deepseek("V3 peak in June", "2025-06-10T09:00:00Z", "ds v3"),
    deepseek("V3 last ms before V3.1", "2025-09-05T15:59:59.999Z", "ds v3"),
    deepseek("V3.1 first ms (16:00 UTC)", "2025-09-05T16:00:00Z", "ds v3.1"),
    deepseek("V3.1 at an hour that used to be off-peak", "2025-09-05T16:30:00Z", "ds v3.1"),
    deepseek("V3.1 off-peak hour, discount cancelled", "2025-09-20T20:00:00Z", "ds v3.1"),
    deepseek("V3.1 last ms", "2025-09-28T23:59:59.999Z", "ds v3.1"),
    deepseek("V3.2", "2025-09-29T00:00:00Z", "ds v3.2"),
    deepseek("V3.2 at an old off-peak hour", "2025-12-01T18:00:00Z", "ds v3.2"),
    deepseek("reasoner R1", "2025-01-25T10:00:00Z", "ds r1", model="deepseek-reasoner", reasoning=6_000),
    deepseek(
        "reasoner R1 off-peak hour before the discount", "2025-02-10T20:00:00Z", "ds r1", model="deepseek-reasoner"
    ),
    deepseek("reasoner R1 off-peak", "2025-03-01T17:00:00Z", "ds off-peak", model="deepseek-reasoner", reasoning=5_000),
    deepseek("reasoner last ms at R1 price", "2025-09-05T15:59:59.999Z", "ds r1", model="deepseek-reasoner"),
    deepseek("reasoner V3.1", "2025-09-05T16:00:00Z", "ds v3.1", model="deepseek-reasoner", reasoning=4_000),
    deepseek("reasoner V3.2", "2025-10-01T20:00:00Z", "ds v3.2", model="deepseek-reasoner", reasoning=3_000),
    # --- thinking output costs more (Gemini 2.5 Flash preview), Gemini 1.5 Flash's 128K tier
    Case(
        "gemini 2.5 flash preview, thinking off",
        "google",
        "gemini-2.5-flash-preview-04-17",
        "2025-05-02T10:00:00Z",
        "gemini-2.5-flash-preview",
        40_000,
        2_000,
    ),
    Case(
        "gemini 2.5 flash preview, thinking on",
        "google",
        "gemini-2.5-flash-preview-04-17",
        "2025-05-02T10:00:00Z",
        "gemini-2.5-flash-preview",
        40_000,
        6_000,
        reasoning=4_500,
    ),
    Case(
        "gemini 2.5 flash preview, thinking on, vertex_ai/ name",
        "",
        "vertex_ai/gemini-2.5-flash-preview-04-17",
        "2025-05-20T10:00:00Z",
        "gemini-2.5-flash-preview",
        1_000,
        3_000,
        reasoning=2_999,
    ),
    Case(
        "gemini 2.5 flash preview, convention spelling",
        "gcp.vertex_ai",
        "gemini-2.5-flash-preview-04-17",
        "2025-05-02T10:00:00Z",
        "gemini-2.5-flash-preview",
        2_000,
        100,
    ),
    Case("gemini 1.5 flash", "google", "gemini-1.5-flash", "2025-01-15T10:00:00Z", "gemini-1.5-flash", 128_000, 1_000),
    Case(
        "gemini 1.5 flash above 128K",
        "google",
        "gemini-1.5-flash",
        "2025-01-15T10:00:00Z",
        "gemini-1.5-flash >128K",
        128_001,
        1_000,
    ),
    Case(
        "gemini 1.5 flash, gemini spelling",
        "gemini",
        "gemini-1.5-flash-002",
        "2025-01-15T10:00:00Z",
        "gemini-1.5-flash",
        9_000,
        400,
    ),
    # --- Anthropic, the simulator's models
    Case(
        "claude 3.5 sonnet with cache writes and reads",
        "anthropic",
        "claude-3-5-sonnet",
        "2025-01-20T10:00:00Z",
        "sonnet-3.5",
        60_000,
        1_500,
        cache_read=30_000,
        cache_write=12_000,
        response="claude-3-5-sonnet-20241022",
    ),
    Case(
        "claude 3.5 haiku with cache",
        "anthropic",
        "claude-3-5-haiku",
        "2025-01-20T10:00:00Z",
        "haiku-3.5",
        16_000,
        700,
        cache_read=8_000,
        cache_write=4_000,
        response="claude-3-5-haiku-20241022",
    ),
    Case(
        "claude 3.5 haiku, provider inferred",
        "",
        "claude-3-5-haiku-20241022",
        "2025-01-21T10:00:00Z",
        "haiku-3.5",
        4_000,
        400,
    ),
    # --- Mistral, AWS Bedrock
    Case("mistral large", "mistral", "mistral-large-latest", "2025-04-01T10:00:00Z", "mistral-large", 20_000, 3_000),
    Case(
        "mistral large, mistral_ai spelling",
        "mistral_ai",
        "mistral-large-latest",
        "2025-04-01T10:00:00Z",
        "mistral-large",
        1_000,
        100,
    ),
    Case(
        "bedrock haiku",
        "aws",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "2025-04-01T10:00:00Z",
        "bedrock haiku-3.5",
        10_000,
        2_000,
    ),
    Case(
        "bedrock haiku, cross-region profile, convention spelling",
        "aws.bedrock",
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "2025-04-01T10:00:00Z",
        "bedrock haiku-3.5",
        10_000,
        2_000,
    ),
    # --- still unpriced: flagged, never free
    Case("self-hosted model", "self-hosted", "llama-3.1-70b", "2025-04-01T10:00:00Z", None, 10_000, 500),
    Case(
        "a prefix never moves another provider's span",
        "self-hosted",
        "openai/gpt-4o",
        "2025-04-01T10:00:00Z",
        None,
        10_000,
        500,
    ),
    Case("unknown router prefix", "", "acme-router/house-model", "2025-04-01T10:00:00Z", None, 1_000, 50),
]


def expected(case: Case) -> dict[str, Decimal]:
    """The cost columns from the cited page, by the OTel token convention (input includes cache, output reasoning)."""
    if case.page is None:
        return dict.fromkeys(("input", "cache_read", "cache_write", "output", "total"), Decimal(0))
    page = PAGES[case.page]
    rate_in = Decimal(page.input)
    uncached = Decimal(case.input - case.cache_read - case.cache_write)
    thinking = case.reasoning > 0 and page.thinking_output is not None
    costs = {
        "input": uncached * rate_in / MTOK,
        "cache_read": case.cache_read * Decimal(page.cache_read or page.input) / MTOK,
        "cache_write": case.cache_write * Decimal(page.cache_write or page.input) / MTOK,
        "output": case.output * Decimal(page.thinking_output if thinking else page.output) / MTOK,
    }
    return {**costs, "total": sum(costs.values(), Decimal(0))}


def span(index: int, case: Case) -> dict[str, Any]:
    return {
        "span_id": f"corpus-{index:03d}",
        "trace_id": f"trace-{index:03d}",
        "service": "corpus",
        "kind": "embedding" if case.model.startswith("text-embedding") else "llm",
        "provider": case.provider or None,
        "model_requested": case.model,
        "model_response": case.response or None,
        "start_time": case.at,
        "duration_ms": 1_000.0,
        "input_tokens": case.input,
        "output_tokens": case.output,
        "cache_read_tokens": case.cache_read,
        "cache_write_tokens": case.cache_write,
        "reasoning_tokens": case.reasoning,
    }


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """The corpus as one Kafka message through process_batch, inserted as the sink inserts, read back."""
    spans = [span(i, case) for i, case in enumerate(CORPUS)]
    batch = Batch(0, 0, 0, [Message(0, 0, orjson.dumps(spans), "test")], replayed=False)
    processed = process_batch(batch, TOPIC, PriceCatalog.load())
    assert not processed.dead_letters and processed.rows is not None and len(processed.rows) == len(CORPUS)
    path: Path = tmp_path_factory.mktemp("corpus") / "chdb"
    # the corpus spans 2024-2025: a retention long enough that the raw TTL keeps them
    with migrated_chdb(path, DB, ttl_days=3_650) as client:
        client.insert_arrow(
            f"{DB}.spans",
            processed.table,
            settings={**DEDUP_SETTINGS, "insert_deduplication_token": batch.token(TOPIC, "id")},
        )
        yield read_back(client)


def read_back(client: Client) -> dict[str, dict[str, Any]]:
    query = (
        f"SELECT span_id, input_cost_usd, cache_read_cost_usd, cache_write_cost_usd, output_cost_usd, cost_usd, "
        f"cost_known, price_source, price_entry FROM {DB}.spans"
    )
    return {row["span_id"]: row for row in client.query(query).named_results()}


def test_the_corpus_covers_six_providers_and_every_class() -> None:
    assert len(CORPUS) >= 60
    providers = {PAGES[case.page].source.split("/")[2] for case in CORPUS if case.page is not None}
    assert len(providers) >= 6, providers
    assert {case.provider for case in CORPUS} >= {"openai", "anthropic", "google", "deepseek", "mistral", "aws"}


@pytest.mark.parametrize("index", range(len(CORPUS)), ids=[case.label for case in CORPUS])
def test_stored_costs_equal_the_providers_pages(stored: dict[str, dict[str, Any]], index: int) -> None:
    case, row = CORPUS[index], stored[f"corpus-{index:03d}"]
    want = expected(case)
    got = {
        "input": row["input_cost_usd"],
        "cache_read": row["cache_read_cost_usd"],
        "cache_write": row["cache_write_cost_usd"],
        "output": row["output_cost_usd"],
        "total": row["cost_usd"],
    }
    for column, value in want.items():
        assert abs(Decimal(repr(got[column])) - value) <= TOLERANCE, (column, got[column], value, row["price_entry"])
    if case.page is None:
        assert (row["cost_known"], row["price_source"], row["price_entry"]) == (False, "unknown", "")
    else:
        assert row["cost_known"] is True and row["price_entry"].split(":")[0] in ("catalog", "correction")
