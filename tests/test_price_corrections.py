"""Price corrections: the bundled file, timestamp validity, layer order, name resolution, the CLI.

The hand-priced corpus (tests/test_priced_corpus.py) checks the bundled corrections' prices end to
end; this module checks the machinery with small files of its own and pins, for every bundled
correction, that the catalog and the provider's page disagree and the page wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spanline.cli import main
from spanline.contract.schema import TOKEN_FIELDS
from spanline.errors import ConfigError
from spanline.streams.pricing import PRICE_COLUMNS, PriceCatalog
from spanline.streams.pricing.corrections import BUNDLED, read_corrections
from spanline.streams.pricing.snapshot import CATALOG_ENTRY

MTOK = 1_000_000


def spans_frame(rows: Sequence[Mapping[str, object]]) -> pd.DataFrame:
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


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog.load()


@pytest.fixture(scope="module")
def bare() -> PriceCatalog:
    return PriceCatalog.load(corrections_file=None)


# --- the bundled file


def test_every_bundled_correction_names_its_page_and_the_day_it_was_checked() -> None:
    entries, _ = read_corrections(BUNDLED)
    assert len(entries) >= 10
    for entry in entries:
        assert entry.source.scheme == "https", entry.id
        assert entry.checked == date(2026, 12, 6), entry.id
        assert len(entry.note) > 40, entry.id
    assert len({entry.id for entry in entries}) == len(entries)


# For each bundled correction, an instant inside it and tokens that show the difference:
# (id, provider, model, start time, input, cache read, output, reasoning). The off-peak windows
# have the catalog's own discount rates: what they fix is when the discount applies (the catalog
# applies it at every date), which the entries around them pin (deepseek-chat-v3 at 20:00 UTC
# before the first window, deepseek-chat-v3-1 after the last).
AGREEING_RATES = {"deepseek-chat-v3-off-peak", "deepseek-reasoner-r1-off-peak"}
PINNED = [
    (
        "anthropic-claude-sonnet-4-long-context",
        "anthropic",
        "claude-sonnet-4-0",
        "2026-01-01T00:00:00Z",
        300_000,
        0,
        1_000,
        0,
    ),
    ("openai-gpt-4o-alias-2024-05-13", "openai", "gpt-4o", "2024-08-01T00:00:00Z", 10_000, 0, 1_000, 0),
    ("deepseek-chat-v3-launch-promotion", "deepseek", "deepseek-chat", "2025-01-10T20:00:00Z", 10_000, 5_000, 1_000, 0),
    ("deepseek-chat-v3", "deepseek", "deepseek-chat", "2025-02-10T20:00:00Z", 10_000, 5_000, 1_000, 0),
    ("deepseek-chat-v3-off-peak", "deepseek", "deepseek-chat", "2025-03-10T20:00:00Z", 10_000, 5_000, 1_000, 0),
    ("deepseek-chat-v3-1", "deepseek", "deepseek-chat", "2025-09-10T20:00:00Z", 10_000, 5_000, 1_000, 0),
    ("deepseek-chat-v3-2", "deepseek", "deepseek-chat", "2025-10-10T20:00:00Z", 10_000, 5_000, 1_000, 0),
    ("deepseek-reasoner-r1", "deepseek", "deepseek-reasoner", "2025-02-10T20:00:00Z", 10_000, 5_000, 1_000, 0),
    ("deepseek-reasoner-r1-off-peak", "deepseek", "deepseek-reasoner", "2025-03-10T20:00:00Z", 10_000, 5_000, 1_000, 0),
    ("deepseek-reasoner-v3-1", "deepseek", "deepseek-reasoner", "2025-09-10T20:00:00Z", 10_000, 5_000, 1_000, 0),
    ("deepseek-reasoner-v3-2", "deepseek", "deepseek-reasoner", "2025-10-10T20:00:00Z", 10_000, 5_000, 1_000, 0),
    (
        "google-gemini-2-5-flash-preview-04-17-thinking",
        "google",
        "gemini-2.5-flash-preview-04-17",
        "2025-05-01T00:00:00Z",
        10_000,
        0,
        1_000,
        500,
    ),
]


def test_every_bundled_correction_is_pinned_here() -> None:
    entries, _ = read_corrections(BUNDLED)
    assert {entry.id for entry in entries} == {pin[0] for pin in PINNED}


@pytest.mark.parametrize(("entry_id", "provider", "model", "at", "tokens", "cached", "output", "reasoning"), PINNED)
def test_where_catalog_and_page_disagree_the_page_wins(
    catalog: PriceCatalog,
    bare: PriceCatalog,
    entry_id: str,
    provider: str,
    model: str,
    at: str,
    tokens: int,
    cached: int,
    output: int,
    reasoning: int,
) -> None:
    row = {
        "provider": provider,
        "model_requested": model,
        "start_time": at,
        "input_tokens": tokens,
        "cache_read_tokens": cached,
        "output_tokens": output,
        "reasoning_tokens": reasoning,
    }
    corrected = catalog.price(spans_frame([row])).iloc[0]
    original = bare.price(spans_frame([row])).iloc[0]
    assert corrected["price_entry"] == f"correction:{entry_id}"
    assert corrected["price_source"] == "correction" and corrected["price_version"] == f"correction {entry_id}"
    assert original["price_entry"] == CATALOG_ENTRY
    if entry_id in AGREEING_RATES:
        assert corrected["cost_usd"] == pytest.approx(original["cost_usd"], rel=1e-12)
    else:
        assert corrected["cost_usd"] != pytest.approx(original["cost_usd"], rel=1e-9)


# --- validity by instant, until, daily windows with their own validity

CORRECTIONS = """
- id: test-launch
  provider: deepseek
  model: deepseek-chat
  valid_from: 2025-01-01T00:00:00Z
  valid_until: 2025-03-01T16:00:00Z
  input_mtok: 1
  output_mtok: 2
  source: https://example.com/launch
  checked: 2026-12-06
  note: a launch price ending at 16:00 UTC
- id: test-later
  provider: deepseek
  model: deepseek-chat
  valid_from: 2025-03-01T16:00:00Z
  valid_until: 2025-06-01
  input_mtok: 3
  output_mtok: 4
  source: https://example.com/later
  checked: 2026-12-06
  note: the price after the launch, until June
- id: test-night
  provider: deepseek
  model: deepseek-chat
  daily: {from: "22:00", until: "02:00"}
  valid_from: 2025-02-01T22:00:00Z
  valid_until: 2025-04-01
  input_mtok: 0.5
  output_mtok: 1
  source: https://example.com/night
  checked: 2026-12-06
  note: a night window valid for two months
- id: test-alias
  provider: openai
  model: gpt-4o
  names: [gpt-4o]
  valid_until: 2024-10-02
  input_mtok: 7
  output_mtok: 21
  source: https://example.com/alias
  checked: 2026-12-06
  note: the bare alias only
"""


@pytest.fixture(scope="module")
def corrected(tmp_path_factory: pytest.TempPathFactory) -> PriceCatalog:
    return PriceCatalog.load(corrections_file=write(tmp_path_factory.mktemp("c"), "corrections.yaml", CORRECTIONS))


@pytest.mark.parametrize(
    ("at", "entry"),
    [
        ("2024-12-31T23:59:59.999Z", CATALOG_ENTRY),  # before the first entry: the catalog
        ("2025-01-01T00:00:00Z", "correction:test-launch"),
        ("2025-01-31T23:00:00Z", "correction:test-launch"),  # night hour, before the window is valid
        ("2025-02-01T21:59:59.999Z", "correction:test-launch"),
        ("2025-02-01T22:00:00Z", "correction:test-night"),
        ("2025-02-02T01:59:59.999Z", "correction:test-night"),  # past midnight
        ("2025-02-02T02:00:00Z", "correction:test-launch"),
        ("2025-03-01T15:59:59.999Z", "correction:test-launch"),  # a change at 16:00 UTC, not midnight
        ("2025-03-01T16:00:00Z", "correction:test-later"),
        ("2025-03-31T23:00:00Z", "correction:test-night"),
        ("2025-04-01T00:30:00Z", "correction:test-later"),  # window ended at midnight
        ("2025-05-31T23:59:59.999Z", "correction:test-later"),
        ("2025-06-01T00:00:00Z", CATALOG_ENTRY),  # after the last entry ends: the catalog again
    ],
)
def test_periods_and_windows_hold_from_their_start_until_their_end(
    corrected: PriceCatalog, at: str, entry: str
) -> None:
    spans = spans_frame(
        [{"provider": "deepseek", "model_requested": "deepseek-chat", "start_time": at, "input_tokens": MTOK}]
    )
    assert corrected.price(spans)["price_entry"].tolist() == [entry]


def test_exact_name_corrections_leave_the_snapshots_alone(corrected: PriceCatalog) -> None:
    at = "2024-09-01T00:00:00Z"
    spans = spans_frame(
        [
            {"provider": "openai", "model_requested": "gpt-4o", "start_time": at, "input_tokens": MTOK},
            {"provider": "openai", "model_requested": "GPT-4o", "start_time": at, "input_tokens": MTOK},
            {"provider": "", "model_requested": "openai/gpt-4o", "start_time": at, "input_tokens": MTOK},
            {"provider": "openai", "model_requested": "gpt-4o-2024-08-06", "start_time": at, "input_tokens": MTOK},
            # the response wins: a served snapshot is priced as that snapshot
            {
                "provider": "openai",
                "model_requested": "gpt-4o",
                "model_response": "gpt-4o-2024-08-06",
                "start_time": at,
                "input_tokens": MTOK,
            },
            {"provider": "azure", "model_requested": "gpt-4o", "start_time": at, "input_tokens": MTOK},
        ]
    )
    assert corrected.price(spans)["input_cost_usd"].tolist() == pytest.approx([7, 7, 7, 2.5, 2.5, 2.5], rel=1e-12)


# --- layer order: tenant override > every-tenant override > correction > catalog


def test_overrides_beat_corrections_which_beat_the_catalog(tmp_path: Path) -> None:
    overrides = write(
        tmp_path,
        "overrides.yaml",
        """
- {provider: deepseek, model: deepseek-chat, valid_from: 2025-05-01, input_mtok: 10, output_mtok: 10}
- {provider: deepseek, model: deepseek-chat, tenant: acme, valid_from: 2025-05-15, input_mtok: 20, output_mtok: 20}
""",
    )
    catalog = PriceCatalog.load(overrides, write(tmp_path, "corrections.yaml", CORRECTIONS))
    spans = spans_frame(
        [
            {
                "tenant_id": tenant,
                "provider": "deepseek",
                "model_requested": "deepseek-chat",
                "start_time": at,
                "input_tokens": MTOK,
            }
            for tenant, at in [
                ("globex", "2024-06-01T00:00:00Z"),
                ("globex", "2025-04-01T12:00:00Z"),
                ("globex", "2025-05-20T12:00:00Z"),
                ("acme", "2025-05-20T12:00:00Z"),
            ]
        ]
    )
    priced = catalog.price(spans)
    assert priced["price_entry"].tolist() == [CATALOG_ENTRY, "correction:test-later", "override:0", "override:1"]
    assert priced["price_source"].tolist() == ["genai-prices", "correction", "override", "override"]
    assert priced["input_cost_usd"].tolist()[1:] == pytest.approx([3, 10, 20], rel=1e-12)
    assert list(priced.columns) == list(PRICE_COLUMNS)


# --- bad files


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- {}\n", ["entry 0", "'id'"]),
        (CORRECTIONS.replace('"22:00"', "22:00"), ["entry 2", "'daily'", "HH:MM"]),
        (CORRECTIONS.replace("https://example.com/night", "example.com/night"), ["entry 2", "'source'"]),
        (CORRECTIONS.replace("id: test-later", "id: test-launch"), ["share the id", "test-launch"]),
        (
            CORRECTIONS.replace("valid_until: 2025-06-01", "valid_until: 2025-02-01"),
            ["test-later", "ends", "before it starts"],
        ),
        (
            CORRECTIONS.replace("valid_from: 2025-03-01T16:00:00Z", "valid_from: 2025-01-01T00:00:00Z"),
            ["'test-launch' and 'test-later'", "deepseek/deepseek-chat"],
        ),
        ("provider: a\n", ["expected a YAML list"]),
        (CORRECTIONS.replace("input_mtok: 3", "input_mtok: -3"), ["entry 1", "'input_mtok'"]),
        (
            CORRECTIONS.replace(
                "  input_mtok: 3\n",
                "  input_mtok: 3\n  tiers: [{above: 900, input_mtok: 1, output_mtok: 1}, {above: 100, input_mtok: 2, output_mtok: 2}]\n",
            ),
            ["test-later", "tiers out of order"],
        ),
    ],
)
def test_a_bad_corrections_file_is_a_config_error_naming_entry_and_field(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as raised:
        PriceCatalog.load(corrections_file=write(tmp_path, "corrections.yaml", text))
    for part in expected:
        assert part in str(raised.value), str(raised.value)


# --- names: router-style prefixes, deployments, never free


def test_router_style_names_resolve_and_unknown_ones_stay_flagged(catalog: PriceCatalog) -> None:
    at = "2025-06-01T00:00:00Z"
    names = [
        ("", "openai/gpt-4o-2024-08-06"),
        ("openai", "openai/gpt-4o-2024-08-06"),
        ("", "anthropic/claude-3-5-haiku-20241022"),
        ("", "vertex_ai/gemini-1.5-flash"),
        ("", "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("aws", "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("self-hosted", "openai/gpt-4o"),  # a prefix never moves another provider's span
        ("anthropic", "openai/gpt-4o"),  # nor one of a provider it contradicts
        ("", "acme-router/house-model"),
    ]
    spans = spans_frame(
        [
            {"provider": p, "model_requested": m, "start_time": at, "input_tokens": MTOK, "output_tokens": MTOK}
            for p, m in names
        ]
    )
    priced = catalog.price(spans)
    assert priced["cost_known"].tolist() == [1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert priced["cost_usd"].tolist() == pytest.approx([12.5, 12.5, 4.8, 0.75, 4.8, 4.8, 0, 0, 0], rel=1e-12)
    assert priced["price_source"].tolist()[-3:] == ["unknown"] * 3


def test_deployment_names_resolve_through_the_configured_mapping(tmp_path: Path) -> None:
    deployments = write(
        tmp_path,
        "deployments.yaml",
        "azure:\n  Prod-Chat: gpt-4o-mini-2024-07-18\n  prod-embed: text-embedding-3-small\naws.bedrock:\n  my-profile: anthropic.claude-3-5-haiku-20241022-v1:0\n",
    )
    catalog = PriceCatalog.load(deployments_file=deployments)
    at = "2025-06-01T00:00:00Z"
    names = [
        ("azure", "prod-chat"),
        ("azure", "azure/prod-chat"),
        ("", "azure/Prod-Chat"),
        ("openai", "gpt-4o-mini"),
        ("aws", "my-profile"),
        ("azure", "staging-chat"),  # not mapped: flagged
    ]
    spans = spans_frame(
        [{"provider": p, "model_requested": m, "start_time": at, "input_tokens": MTOK} for p, m in names]
    )
    priced = catalog.price(spans)
    assert priced["input_cost_usd"].tolist() == pytest.approx([0.15, 0.15, 0.15, 0.15, 0.8, 0.0], rel=1e-12)
    assert priced["cost_known"].tolist() == [1, 1, 1, 1, 1, 0]
    unmapped = PriceCatalog.load().price(spans.iloc[:1])
    assert unmapped["cost_known"].tolist() == [0]


def test_a_bad_deployments_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model deployments file"):
        PriceCatalog.load(deployments_file=write(tmp_path, "deployments.yaml", "azure: [a, b]\n"))


# --- the CLI


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    main(list(argv))
    return re.sub(r"\s+", " ", capsys.readouterr().out)


def test_prices_show_prints_the_price_in_force_its_entry_and_source(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_cli(capsys, "prices", "show", "deepseek-chat", "--provider", "deepseek", "--at", "2025-09-05T16:00:00Z")
    assert "correction:deepseek-chat-v3-1" in out and "https://api-docs.deepseek.com/quick_start/pricing" in out
    assert "input 0.56" in out and "output 1.68" in out and "2025-09-05 16:00 UTC" in out
    before = run_cli(capsys, "prices", "show", "deepseek-chat", "--provider", "deepseek", "--at", "2025-09-05T15:59:59")
    assert "correction:deepseek-chat-v3 " in before and "input 0.27" in before
    catalog = run_cli(capsys, "prices", "show", "openai/gpt-4o-2024-08-06", "--at", "2025-01-01")
    assert f"{CATALOG_ENTRY} " in catalog and "input 2.5" in catalog and "openai/gpt-4o" in catalog
    unknown = run_cli(capsys, "prices", "show", "llama-3.1-70b", "--provider", "self-hosted")
    assert "none" in unknown and "cost_known = 0" in unknown


def test_prices_show_names_the_tenant_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = write(
        tmp_path, "o.yaml", "- {provider: openai, model: gpt-4o, tenant: acme, input_mtok: 1, output_mtok: 2}\n"
    )
    monkeypatch.setenv("SPANLINE_PRICE_OVERRIDES_FILE", str(overrides))
    out = run_cli(capsys, "prices", "show", "gpt-4o", "--provider", "openai", "--tenant", "acme", "--at", "2025-01-01")
    assert "override:0" in out and "input 1; output 2" in out and "input 2.5; cache read 1.25" in out


def test_prices_diff_lists_every_correction_against_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_cli(capsys, "prices", "diff")
    entries, _ = read_corrections(BUNDLED)
    for entry in entries:
        assert entry.id[:18] in out.replace(" ", "").replace("│", "") or entry.id in out
    assert "above 200,000 input" in out and "22.5" in out  # Sonnet 4's tier: catalog 15, page 22.50
    assert "output thinking" in out and "3.5" in out


def test_bad_at_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["prices", "show", "gpt-4o", "--at", "yesterday-ish"])
    assert exited.value.code == 2
    assert "expected an ISO date" in capsys.readouterr().out


def test_corrections_keep_pricing_vectorised(catalog: PriceCatalog) -> None:
    """A batch of 50,000 spans over the corrected models prices in one pass, row order kept."""
    rng = np.random.default_rng(5)
    n = 50_000
    models = ["deepseek-chat", "deepseek-reasoner", "gpt-4o", "claude-sonnet-4-0", "gemini-2.5-flash-preview-04-17"]
    providers = ["deepseek", "deepseek", "openai", "anthropic", "google"]
    which = rng.integers(0, len(models), n)
    low, high = pd.Timestamp("2024-06-01", tz="UTC").value, pd.Timestamp("2025-12-01", tz="UTC").value
    spans = spans_frame([{}] * n).assign(
        provider=[providers[i] for i in which],
        model_requested=[models[i] for i in which],
        start_time=pd.to_datetime(rng.integers(low, high, n), utc=True).astype("datetime64[ms, UTC]"),
        input_tokens=rng.integers(1, 400_000, n),
        output_tokens=rng.integers(1, 5_000, n),
    )
    priced = catalog.price(spans)
    one_by_one = pd.concat([catalog.price(spans.iloc[i : i + 1]) for i in range(0, n, 997)])
    pd.testing.assert_frame_equal(priced.loc[one_by_one.index], one_by_one)
    assert (priced["cost_known"] == 1).all() and priced["price_entry"].str.startswith("correction:").mean() > 0.5


def test_tiers_are_cliffs_on_total_input_and_the_highest_passed_applies(tmp_path: Path) -> None:
    text = """
- id: test-tiers
  provider: deepseek
  model: deepseek-chat
  input_mtok: 1
  output_mtok: 10
  cache_read_mtok: 0.1
  tiers:
    - {above: 100, input_mtok: 2, output_mtok: 20, cache_read_mtok: 0.2}
    - {above: 900, input_mtok: 3, output_mtok: 30, cache_read_mtok: 0.3}
  source: https://example.com/tiers
  checked: 2026-12-06
  note: two context tiers, thresholds on all input tokens
"""
    catalog = PriceCatalog.load(corrections_file=write(tmp_path, "corrections.yaml", text))
    spans = spans_frame(
        [
            {
                "provider": "deepseek",
                "model_requested": "deepseek-chat",
                "input_tokens": n,
                "cache_read_tokens": n // 2,
                "output_tokens": MTOK,
            }
            for n in (100, 101, 900, 901)
        ]
    )
    priced = catalog.price(spans)
    assert priced["output_cost_usd"].tolist() == pytest.approx([10, 20, 20, 30], rel=1e-12)
    uncached_rate = [1, 2, 2, 3]
    expected_input = [(n - n // 2) * rate / MTOK for n, rate in zip((100, 101, 900, 901), uncached_rate, strict=True)]
    assert priced["input_cost_usd"].tolist() == pytest.approx(expected_input, rel=1e-12)
    assert priced["cache_read_cost_usd"].tolist() == pytest.approx(
        [50 * 0.1 / MTOK, 50 * 0.2 / MTOK, 450 * 0.2 / MTOK, 450 * 0.3 / MTOK], rel=1e-12
    )
