"""Stage budgets and provider rate limits (issue 15): contract lookups, validation, and the
evaluator's two conditions on hand-made minutes (the incidents are replayed in test_alert_scenarios)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from ddsketch import DDSketch

from spanline.alerts.evaluator import Evaluator
from spanline.alerts.rules import RULES_FILE, load_rules
from spanline.contracts import load_contracts, rate_limit, stage_budget
from spanline.errors import ConfigError
from spanline.windows.aggregate import COUNTS, SUMS

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_the_most_specific_stage_budget_and_rate_limit_win() -> None:
    contracts = load_contracts()
    assert stage_budget(contracts, "acme", "support-chat", "rerank") == 150
    assert stage_budget(contracts, "acme", "doc-search", "rerank") == 300
    assert stage_budget(contracts, "acme", "doc-search", "agent_step") is None
    assert rate_limit(contracts, "tokens_per_minute", "acme", "google", "gemini-1.5-flash") == 2_000_000
    assert rate_limit(contracts, "tokens_per_minute", "globex", "google", "gemini-1.5-flash") == 4_000_000
    assert rate_limit(contracts, "requests_per_minute", "globex", "selfhosted", "llama-3.1-70b") is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"tenant": "x", "feature": "f", "rate_limits": [{"provider": "p", "model": "m", "tokens_per_minute": 1}]},
            "not to a feature",
        ),
        ({"tenant": "x", "rate_limits": [{"provider": "p", "model": "m"}]}, "tokens_per_minute, requests_per_minute"),
        ({"tenant": "x", "rate_limits": [{"provider": "p", "model": "m", "tokens_per_minute": 1}] * 2}, "twice"),
        ({"tenant": "x", "stage_p95_ms": {"request": 100}}, "stage_p95_ms"),
        ({"tenant": "x", "stage_p95_ms": {"rerank": 0}}, "greater than 0"),
    ],
)
def test_bad_budgets_and_limits_say_what_is_wrong(tmp_path: Path, entry: dict, message: str) -> None:
    path = tmp_path / "contracts.yaml"
    path.write_text(yaml.safe_dump({"contracts": [entry]}))
    with pytest.raises(ConfigError, match=message):
        load_contracts(path)


@pytest.mark.parametrize(
    ("rule", "change", "message"),
    [
        ("stage_budget", {"scope": ["tenant_id", "feature"]}, "put kind in the scope"),
        (
            "rate_limit_headroom_tokens",
            {"scope": ["tenant_id", "provider"]},
            "needs tenant_id, provider, model_requested",
        ),
        ("rate_limit_headroom_tokens", {"metric": "llm_requests"}, "limits llm_tokens, not llm_requests"),
    ],
)
def test_rules_on_budgets_and_limits_need_their_scope(tmp_path: Path, rule: str, change: dict, message: str) -> None:
    document = yaml.safe_load(RULES_FILE.read_text())
    next(r for r in document["rules"] if r["name"] == rule).update(change)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError, match=message):
        load_rules(path)


class Minute:
    def __init__(self, minute: datetime, frame: pd.DataFrame) -> None:
        self.minute, self.frame = minute, frame


def _rows(kind: str, spans: int, durations: list[float], tokens: int = 0, **dims: str) -> dict[str, object]:
    sketch = DDSketch(0.01)
    for value in durations:
        sketch.add(value)
    row: dict[str, object] = {name: 0 for name in COUNTS} | {name: 0.0 for name in SUMS}
    base = {
        "tenant_id": "acme",
        "service": "search-api",
        "feature": "doc-search",
        "provider": "",
        "model_requested": "",
    }
    row |= base | {"route": "", "kind": kind, "spans": spans, "duration_ms_sketch": sketch} | dims
    if kind == "llm":
        row |= {"llm_calls": spans, "input_tokens": tokens, "output_tokens": 0}
    if kind == "request":
        row["requests"] = spans
    return row


def _minutes(rerank_ms: float, gemini_calls: int, minutes: int = 12) -> list[Minute]:
    rng = np.random.default_rng(1)
    frames = []
    for m in range(minutes):
        rows = [
            _rows("request", 20, list(rng.uniform(2000, 3000, 20))),
            _rows("rerank", 20, list(rng.uniform(0.5, 1.0, 20) * rerank_ms)),
            _rows(
                "llm",
                gemini_calls,
                [800.0],
                tokens=gemini_calls * 4000,
                provider="google",
                model_requested="gemini-1.5-flash",
            ),
        ]
        frames.append(Minute(START + timedelta(minutes=m), pd.DataFrame(rows)))
    return frames


def _pages(minutes: list[Minute]) -> dict[str, dict[str, str]]:
    rules = [
        r
        for r in load_rules()
        if r.name in ("stage_budget", "rate_limit_headroom_tokens", "rate_limit_headroom_requests")
    ]
    evaluator = Evaluator(rules, load_contracts())
    pages = {}
    for minute in minutes:
        for event in evaluator.evaluate(minute):
            if event.state == "firing":
                pages[event.rule] = event.scope | {"branch": event.runbook_branch, "summary": event.summary}
    return pages


def test_a_stage_over_budget_and_a_key_near_its_limit_page_with_their_scope() -> None:
    # rerank p95 ~ 390 ms > 300 ms; 450 calls x 4,000 tokens = 1.8M tokens and 450 requests a minute
    pages = _pages(_minutes(rerank_ms=400.0, gemini_calls=450))
    assert pages["stage_budget"]["kind"] == "rerank" and pages["stage_budget"]["feature"] == "doc-search"
    assert "> budget 300 ms" in pages["stage_budget"]["summary"]
    tokens = pages["rate_limit_headroom_tokens"]
    assert (tokens["tenant_id"], tokens["model_requested"]) == ("acme", "gemini-1.5-flash")
    assert "1,800,000 tokens/min = 90% of the 2,000,000 TPM limit" in tokens["summary"]
    assert "450 requests/min = 112% of the 400 RPM limit" in pages["rate_limit_headroom_requests"]["summary"]


def test_inside_budget_and_below_80_percent_nothing_pages() -> None:
    # rerank p95 ~ 250 ms; 350 calls x 4,000 = 1.4M tokens (70%), 350 requests (87.5% of 400: pages alone)
    pages = _pages(_minutes(rerank_ms=260.0, gemini_calls=350))
    assert set(pages) == {"rate_limit_headroom_requests"}
