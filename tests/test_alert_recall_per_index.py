"""Recall is judged per index (issue 16, item 3): a collapse of one of a tenant's three indexes
pages that index, with its branch, although the tenant's mean recall moves less than the rule's
20 points; the same traffic without the collapse pages nothing.

Through the real path: simulated spans become the worker's stored rows, are aggregated per minute
and per closed hour by the windows package's own ``aggregate`` and fed to the evaluator
(tests/support/replay.py), after a bootstrap from closed hours as a fresh worker does.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from spanline.alerts.evaluator import Evaluator
from spanline.alerts.events import AlertEvent
from spanline.alerts.rules import load_rules
from spanline.contracts import load_contracts
from spanline.simulator.scenarios import get_scenario
from spanline.simulator.workload import generate_traces
from spanline.streams.pricing import PriceCatalog
from tests.support.replay import hour_frame, minute_figures, replay, stored_rows

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
HISTORY_HOURS = 1
#: Minutes of the history kept for diagnoses (what the bootstrap reads from spans_minute).
REMEMBERED_MINUTES = 30
REPLAY_MINUTES = 40
COLLAPSE_AT = START + timedelta(hours=HISTORY_HOURS, minutes=15)
INDEXES = ("docs", "faq", "code")
USUAL_RECALL, COLLAPSED_RECALL = 0.93, 0.35


def _spans(traffic: list[dict[str, object]], collapsed: str | None) -> list[dict[str, object]]:
    """Two tenants' baseline traffic whose recall canaries test three indexes each: every canary
    eval of the simulator becomes one eval per index (``index_name`` named on the eval span, as an
    instrumented canary job reports it); from COLLAPSE_AT the index ``collapsed`` of acme finds
    ~35% of the known answers instead of ~93%."""
    rng = np.random.default_rng(5)
    spans: list[dict[str, object]] = []
    for span in traffic:
        if not str(span.get("eval_name", "")).startswith("recall@"):
            spans.append(span)
            continue
        at = datetime.fromisoformat(str(span["start_time"]))
        for number, index in enumerate(INDEXES):
            name = f"{span['tenant_id']}-{index}"
            recall = COLLAPSED_RECALL if name == collapsed and at >= COLLAPSE_AT else USUAL_RECALL
            score = rng.binomial(5, recall) / 5
            spans.append(
                {
                    **span,
                    "span_id": f"{int(str(span['span_id']), 16) ^ number:016x}",
                    "index_name": name,
                    "eval_score": score,
                    "eval_passed": bool(score >= 0.8),
                }
            )
    return spans


@pytest.fixture(scope="module")
def traffic() -> list[dict[str, object]]:
    config = get_scenario("baseline").workload(
        start=START,
        hours=HISTORY_HOURS + REPLAY_MINUTES / 60,
        requests_per_s=0.5,
        seed=21,
        tenants=("acme", "globex"),
    )
    return [span for chunk in generate_traces(config) for span in chunk]


@pytest.fixture(scope="module")
def replayed(traffic: list[dict[str, object]]) -> dict[str | None, tuple[list[AlertEvent], pd.DataFrame]]:
    """Events and stored rows per collapsed index (None: no collapse), each from the same
    bootstrapped evaluator (closed hours learnt, the last minutes kept for diagnoses)."""
    catalog = PriceCatalog.load()
    bootstrapped: Evaluator | None = None
    results = {}
    for collapsed in ("acme-faq", None):
        rows = stored_rows([_spans(traffic, collapsed)], catalog)
        boot = (rows["start_time"] < pd.Timestamp(START + timedelta(hours=HISTORY_HOURS))).to_numpy()
        if bootstrapped is None:  # the history is the same in both: no collapse before COLLAPSE_AT
            bootstrapped = Evaluator(load_rules(), load_contracts())
            history = rows[boot].reset_index(drop=True)
            assert bootstrapped.learn_hours(hour_frame(history)) > 0
            recent = history[
                history["start_time"] >= history["start_time"].max() - timedelta(minutes=REMEMBERED_MINUTES)
            ]
            for figures in minute_figures(recent.reset_index(drop=True)):
                bootstrapped.remember(figures.minute, figures.frame)
        evaluator = copy.deepcopy(bootstrapped)
        results[collapsed] = replay(evaluator, minute_figures(rows[~boot].reset_index(drop=True))), rows
    return results


def test_one_collapsed_index_of_three_pages_that_index(
    replayed: dict[str | None, tuple[list[AlertEvent], pd.DataFrame]],
) -> None:
    events, rows = replayed["acme-faq"]
    listing = "\n".join(f"{e.at:%H:%M} {e.state} {e.summary} {e.runbook_branch}" for e in events)
    pages = [e for e in events if e.state == "firing"]
    assert [(e.rule, e.scope) for e in pages] == [
        ("index_corruption", {"tenant_id": "acme", "index_name": "acme-faq"})
    ], listing
    page = pages[0]
    assert page.runbook == "index-corruption" and page.runbook_branch == "recall_drop"
    assert page.group == {"tenant_id": "acme"}  # indexes failing together would be one page
    assert "index_name=acme-faq" in page.summary
    diagnosis = page.diagnosis
    assert diagnosis["index_name"] == "acme-faq"
    assert diagnosis["recall_at_k"]["now"] < 0.6 and diagnosis["recall_at_k"]["before"] > 0.85
    assert next(iter(diagnosis["recall_at_k_by_index"])) == "acme-faq"  # the worst drop first
    assert COLLAPSE_AT < page.at <= COLLAPSE_AT + timedelta(minutes=25)
    # the tenant's mean recall over the rule's 15 minutes fell less than the rule's 20 points
    recall = rows[(rows["kind"] == "eval") & (rows["tenant_id"] == "acme") & rows["eval_name"].str.startswith("recall")]
    window = recall["start_time"].between(pd.Timestamp(page.at - timedelta(minutes=15)), pd.Timestamp(page.at))
    before = recall["start_time"] < pd.Timestamp(COLLAPSE_AT)
    assert recall.loc[before, "eval_score"].mean() - recall.loc[window, "eval_score"].mean() < 0.20


def test_the_same_traffic_without_a_collapse_pages_nothing(
    replayed: dict[str | None, tuple[list[AlertEvent], pd.DataFrame]],
) -> None:
    events, _ = replayed[None]
    assert events == [], "\n".join(f"{e.at:%H:%M} {e.state} {e.summary}" for e in events)
