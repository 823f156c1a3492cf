"""Rules and contracts as data: the bundled files, clear errors, the CLI, and the runbooks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spanline.alerts.rules import RULES_FILE, RUNBOOKS_DIR, load_rules
from spanline.contracts import CONTRACTS_FILE, contract_limit, load_contracts
from spanline.errors import ConfigError
from spanline.sql.library import load_library
from tests.support.runbook_branches import DIAGNOSIS_BRANCHES

#: docs/requirements.md §5 defaults, plus pipeline self-health: rule -> (metric, runbook).
SPEC_DEFAULTS = {
    "latency_spike": ("ttft_p95_ms", "latency-spike"),
    "error_rate": ("error_rate", "provider-outage"),
    "retry_amplification": ("retry_amplification", "provider-outage"),
    "rate_limiting": ("rate_limited_rate", "rate-limits"),
    "cost_spike_hourly": ("cost_usd", "cost-spike"),
    "cost_spike_day_over_day": ("cost_usd", "cost-spike"),
    "budget_overrun": ("cost_usd", "cost-spike"),
    "cache_collapse": ("cache_hit_rate", "cache-collapse"),
    "routing_shift": ("tier_share", "cost-spike"),
    "tool_call_storm": ("tool_error_rate", "tool-storm"),
    "eval_pass_rate_drop": ("eval_pass_rate", "hallucination-spike"),
    "hallucination_spike": ("hallucination_rate", "hallucination-spike"),
    "index_corruption": ("recall_at_k", "index-corruption"),
    "embedding_mismatch": ("embedding_mismatches", "index-corruption"),
    "context_exhaustion": ("context_exhaustion_rate", "context-budget"),
    "model_version_change": ("new_model_versions", "silent-regression"),
    "consumer_lag": ("consumer_lag_s", "pipeline-health"),
    "alert_input_incomplete": ("silent_partitions", "pipeline-health"),
    "dlq_rate": ("dlq_rate", "pipeline-health"),
}
BURN = ("error_rate", "rate_limiting", "tool_call_storm")
ISSUE_RUNBOOKS = {
    "latency-spike",
    "provider-outage",
    "rate-limits",
    "cost-spike",
    "cache-collapse",
    "tool-storm",
    "hallucination-spike",
    "index-corruption",
    "context-budget",
    "silent-regression",
}


def test_bundled_rules_hold_every_spec_default_with_its_condition() -> None:
    rules = {rule.name: rule for rule in load_rules()}
    assert {name: (rules[name].metric, rules[name].runbook) for name in SPEC_DEFAULTS} == SPEC_DEFAULTS
    assert rules["latency_spike"].condition.value == 2.0 and rules["latency_spike"].condition.baseline.over.days == 7
    # errors, 429s and tool errors page by burn rate: severity per tier, worst first
    tiers = {n: [(t.severity, t.burn * rules[n].condition.budget) for t in rules[n].condition.tiers] for n in BURN}
    assert tiers == {
        "error_rate": [("critical", pytest.approx(0.30)), ("high", pytest.approx(0.10))],
        "rate_limiting": [("high", pytest.approx(0.03)), ("medium", pytest.approx(0.03))],  # 3 and 15 minutes
        "tool_call_storm": [("high", pytest.approx(0.05))],
    }
    assert [t.long.total_seconds() / 60 for t in rules["error_rate"].condition.tiers] == [2, 15]
    assert [rules[n].severity for n in ("error_rate", "rate_limiting", "model_version_change")] == [
        "critical",
        "high",
        "low",
    ]
    assert rules["cost_spike_hourly"].condition.value == 2.0 and rules["cost_spike_day_over_day"].condition.value == 1.2
    assert rules["cost_spike_hourly"].condition.min_z == 6 and rules["cost_spike_hourly"].scope == [
        "tenant_id",
        "feature",
    ]
    assert (
        rules["budget_overrun"].condition.field == "daily_budget_usd"
        and rules["budget_overrun"].condition.factor == 1.5
    )
    assert rules["cache_collapse"].condition.value == 0.8 and rules["routing_shift"].condition.points == 10
    assert rules["tool_call_storm"].also[0].metric == "steps_per_trace"
    assert rules["eval_pass_rate_drop"].condition.points == -3 and rules["hallucination_spike"].condition.value == 1.10
    assert rules["index_corruption"].condition.points == -20
    assert rules["index_corruption"].condition.baseline.over.total_seconds() == 6 * 3600
    assert rules["context_exhaustion"].condition.value == 0.001
    assert all(rule.runbook and rule.severity and rule.summary for rule in rules.values())


def _write_rules(tmp_path: Path, change: dict, index: int = 0) -> Path:
    document = yaml.safe_load(RULES_FILE.read_text())
    document["rules"][index].update(change)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"condition": {"type": "threshold", "op": "=>", "value": 1}}, "rule 'latency_spike' field 'condition.op'"),
        ({"metric": "ttft_p96_ms"}, "unknown metric 'ttft_p96_ms'"),
        ({"runbook": "no-such-runbook"}, "runbook 'no-such-runbook' has no file"),
        ({"for": "5 minutes"}, "rule 'latency_spike' field 'for'"),
        ({"scope": ["tenant"]}, "scope dimension(s) tenant unknown"),
        ({"severity": "urgent"}, "rule 'latency_spike' field 'severity'"),
        (
            {"condition": {"type": "points_change", "points": 5, "baseline": {"kind": "trailing", "over": "6h"}}},
            "points_change needs a ratio metric",
        ),
        ({"group_by": ["provider"]}, "group_by dimension(s) provider are not in the scope"),
        (  # mean tokens per call are neither a proportion, a spend nor a quantile: min_z has no test
            {
                "metric": "llm_tokens",
                "condition": {
                    "type": "ratio_to_baseline",
                    "baseline": {"kind": "trailing", "over": "6h"},
                    "op": ">",
                    "value": 2.0,
                    "min_z": 3,
                },
            },
            "min_z tests a proportion's change, or a spend's or a quantile's ratio to its baseline",
        ),
        ({"metric": "recall_at_k", "condition": {"type": "threshold", "op": "<", "value": 0.5}}, "put index_name"),
    ],
)
def test_invalid_rules_name_the_rule_and_field(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_rules(_write_rules(tmp_path, change))
    assert message in str(error.value)


def _tiers(*tiers: tuple[str, float, str, str]) -> dict:
    return {
        "type": "burn_rate",
        "objective": 0.98,
        "tiers": [{"severity": s, "burn": b, "long": long, "short": short} for s, b, long, short in tiers],
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"condition": _tiers(("high", 5, "15m", "5m"), ("critical", 15, "2m", "1m"))}, "worst severity first"),
        ({"condition": _tiers(("critical", 15, "2m", "2m"))}, "short shorter than long"),
        ({"condition": _tiers(("critical", 60, "15m", "1m"))}, "burn × (1 − objective) must stay below 1"),
        ({"condition": _tiers(("critical", 15, "10m", "1m"))}, "window is its longest tier's long window"),
        ({"condition": _tiers(("critical", 15, "15m", "1m")), "severity": "high"}, "its worst tier's"),
        ({"metric": "cost_usd"}, "burn_rate needs a proportion"),
    ],
)
def test_invalid_burn_rate_conditions_name_the_rule_and_field(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_rules(_write_rules(tmp_path, change, index=1))  # error_rate (window 15m)
    assert "rule 'error_rate'" in str(error.value) and message in str(error.value)


def _with_long_window(index: int, long_window: str) -> dict:
    condition = yaml.safe_load(RULES_FILE.read_text())["rules"][index]["condition"]
    return {"condition": {**condition, "long_window": long_window}}


@pytest.mark.parametrize(
    ("index", "long_window", "message"),
    [
        (0, "30m", "long_window widens a spend clause's significance test"),  # latency_spike: a quantile
        (4, "10m", "longer than the clause's window"),  # cost_spike_hourly (window 10m)
        (4, "90s", "whole minutes"),
        (4, "35m", "long_window plus window may be 40 minutes at most"),
    ],
)
def test_invalid_long_windows_name_the_rule(tmp_path: Path, index: int, long_window: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_rules(_write_rules(tmp_path, _with_long_window(index, long_window), index=index))
    assert message in str(error.value)


def test_duplicate_rule_names_and_bad_yaml_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="used twice: error_rate"):
        load_rules(_write_rules(tmp_path, {"name": "error_rate"}, index=2))
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_rules(broken)


def test_contracts_load_and_the_most_specific_entry_wins(tmp_path: Path) -> None:
    contracts = load_contracts()
    assert contract_limit(contracts, "p95_latency_ms", "acme", "support-chat") == 12000
    assert contract_limit(contracts, "p95_latency_ms", "acme", "code-agent") == 90000
    assert contract_limit(contracts, "daily_budget_usd", "acme", None) == 5000
    assert contract_limit(contracts, "daily_budget_usd", "hooli", None) is None
    specific = tmp_path / "specific.yaml"
    specific.write_text(
        CONTRACTS_FILE.read_text() + "  - tenant: acme\n    feature: support-chat\n    p95_latency_ms: 4000\n"
    )
    contracts = load_contracts(specific)
    assert contract_limit(contracts, "p95_latency_ms", "acme", "support-chat") == 4000
    assert contract_limit(contracts, "p95_latency_ms", "globex", "support-chat") == 12000
    assert contract_limit(contracts, "p95_latency_ms", "acme", None) == 90000  # tenant-wide scope: no feature entry
    bad = tmp_path / "contracts.yaml"
    bad.write_text("contracts:\n  - tenant: acme\n    p95_latency_ms: -5\n  - tenant: globex\n")
    with pytest.raises(ConfigError) as error:
        load_contracts(bad)
    assert "contract #1 p95_latency_ms" in str(error.value) and "contract #2" in str(error.value)
    assert CONTRACTS_FILE.is_file()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spanline", "alerts", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def test_cli_validates_and_lists(tmp_path: Path) -> None:
    valid = _cli("validate")
    assert valid.returncode == 0 and f"{len(load_rules())} rules valid" in valid.stdout
    listing = _cli("list")
    assert listing.returncode == 0 and "latency_spike" in listing.stdout and "ratio_to_baseline > 2" in listing.stdout
    broken = _cli("validate", "--rules", str(_write_rules(tmp_path, {"severity": "urgent"})))
    assert broken.returncode == 2 and "rule 'latency_spike' field 'severity'" in broken.stdout


def test_every_runbook_has_its_sections_and_names_real_library_queries() -> None:
    library = load_library()
    runbooks = {path.stem: path.read_text() for path in RUNBOOKS_DIR.glob("*.md")}
    assert runbooks.keys() >= ISSUE_RUNBOOKS
    assert {rule.runbook for rule in load_rules()} <= runbooks.keys()
    for name, text in runbooks.items():
        for section in ("## Trigger", "## The page's diagnosis", "## Decision tree", "## Resolution", "**Owner:**"):
            assert section in text, f"{name}.md lacks {section}"
        for command in re.findall(r"^spanline sql run .*$", text, re.MULTILINE):
            query = command.split()[3]
            assert query in library, f"{name}.md runs unknown query {query}"
            for param in re.findall(r"--param (\w+)=", command):
                assert param in library[query].params, f"{name}.md: {query} has no parameter {param}"
        assert re.search(r"^spanline sql (run|query) ", text, re.MULTILINE), f"{name}.md confirms nothing"
    named = {q for text in runbooks.values() for q in re.findall(r"^spanline sql run (\w+)", text, re.MULTILINE)}
    assert len(named) >= 10


def test_every_diagnosis_branch_a_rule_can_emit_is_explained_in_its_runbook() -> None:
    for runbook, names in DIAGNOSIS_BRANCHES.items():
        text = (RUNBOOKS_DIR / f"{runbook}.md").read_text()
        assert all(f"`{branch}`" in text for branch in names), runbook
