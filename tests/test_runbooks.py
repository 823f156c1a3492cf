"""Runbooks that open: every link a page can carry names a runbook page the receiver serves, with
the branch's anchor on it; unknown names and paths outside the runbooks get 404."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from spanline.alerts.rules import load_rules
from spanline.runbooks import (
    DECISION_TREE,
    UnknownRunbook,
    branch_anchors,
    runbook_html,
    runbook_link,
    runbook_names,
    runbooks_dir,
)
from spanline.settings import load_settings
from tests.support.receiver import Receiver, receiver_on
from tests.support.runbook_branches import DIAGNOSIS_BRANCHES

BASE = "https://oncall.example.com/runbooks"


def test_every_branch_a_page_can_carry_is_an_anchor_on_its_runbook_page() -> None:
    assert set(DIAGNOSIS_BRANCHES) == set(runbook_names())
    for runbook, branches in DIAGNOSIS_BRANCHES.items():
        page = runbook_html(runbook)
        for branch in branches:
            assert runbook_link(BASE, runbook, branch) == f"{BASE}/{runbook}#{branch}"
            assert f'<strong id="{branch}"><code>{branch}</code></strong>' in page, (runbook, branch)
        assert set(branches) <= branch_anchors(runbook)


def test_a_branch_the_runbook_does_not_name_links_to_its_decision_tree() -> None:
    assert runbook_link(BASE + "/", "cache-collapse", "unknown_layer") == f"{BASE}/cache-collapse#{DECISION_TREE}"
    assert runbook_link(BASE, "cost-spike", "routing_shadow") == f"{BASE}/cost-spike#{DECISION_TREE}"
    assert runbook_link(BASE, "cost-spike", "") == f"{BASE}/cost-spike#{DECISION_TREE}"
    assert all(f'<h2 id="{DECISION_TREE}">Decision tree</h2>' in runbook_html(name) for name in runbook_names())


def test_a_runbook_page_is_the_rendered_markdown_without_scripts() -> None:
    page = runbook_html("cost-spike")
    assert page.startswith("<!doctype html>") and "<title>Runbook: cost spike</title>" in page
    assert '<h1 id="runbook-cost-spike">Runbook: cost spike</h1>' in page
    assert "<table>" in page and "<th>field</th>" in page  # the diagnosis field table
    assert '<pre><code class="language-bash">spanline sql run spend_by_day' in page
    assert "<script" not in page and "src=" not in page


@pytest.mark.parametrize("name", ["no-such-runbook", "../rules.yaml", "cost-spike.md", "..", "", "COST-SPIKE"])
def test_unknown_names_are_refused(name: str) -> None:
    with pytest.raises(UnknownRunbook):
        runbook_html(name)


def test_the_core_finds_the_runbooks_without_importing_the_alerting_stage() -> None:
    """Stages never import each other: the receiver serves runbooks through the core only."""
    probe = (
        "import sys; import spanline.collectors.receiver.app; from spanline.runbooks import runbook_html, runbook_names;"
        "[runbook_html(name) for name in runbook_names()];"
        "print(sorted(m for m in sys.modules if m.startswith('spanline.alerts')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert runbooks_dir() == Path(__file__).resolve().parents[1] / "alerts" / "runbooks"


def test_the_runbook_base_url_defaults_to_the_receiver_and_can_be_overridden(tmp_path: Path) -> None:
    home = {"SPANLINE_HOME": str(tmp_path)}
    assert load_settings(home).resolved_runbook_base_url == "http://127.0.0.1:4318/runbooks"
    on_port = load_settings(home | {"SPANLINE_COLLECTOR_PORT": "9318", "SPANLINE_COLLECTOR_HOST": "10.1.2.3"})
    assert on_port.resolved_runbook_base_url == "http://10.1.2.3:9318/runbooks"
    everywhere = load_settings(home | {"SPANLINE_COLLECTOR_HOST": "0.0.0.0"})
    assert everywhere.resolved_runbook_base_url == f"http://{socket.getfqdn()}:4318/runbooks"
    override = load_settings(home | {"SPANLINE_RUNBOOK_BASE_URL": f"{BASE}/"})
    assert override.resolved_runbook_base_url == BASE


# --- the receiver serving them (it publishes to Kafka, so it needs a broker)


@pytest.fixture(scope="module")
def receiver(tansu_kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    with receiver_on(
        tansu_kafka.bootstrap_servers, tmp_path_factory.mktemp("runbooks"), "rb-spans", "key-rb", "salt", 65536
    ) as server:
        yield server


def get(receiver: Receiver, path: str) -> tuple[int, str, str]:
    """GET a raw path (not normalised by the client: ``..`` and ``%2F`` reach the server as sent)."""

    async def go() -> tuple[int, str, str]:
        async with aiohttp.ClientSession() as session:
            async with session.get(URL(receiver.url + path, encoded=True)) as response:
                return response.status, response.content_type, await response.text()

    return asyncio.run(go())


@pytest.mark.e2e
def test_every_rule_s_runbook_link_opens_on_the_receiver_at_its_branch(receiver: Receiver) -> None:
    base = receiver.settings.resolved_runbook_base_url
    assert base == f"{receiver.url}/runbooks"  # the default: the receiver's own address
    opened = 0
    for rule in load_rules():
        for branch in DIAGNOSIS_BRANCHES[rule.runbook]:
            link = URL(runbook_link(base, rule.runbook, branch))
            status, content_type, page = get(receiver, link.path)
            assert (status, content_type) == (200, "text/html"), link
            assert link.fragment == branch and f'id="{branch}"' in page, link
            opened += 1
    assert opened >= len(load_rules())
    status, _, index = get(receiver, "/runbooks")
    assert status == 200 and all(f'href="/runbooks/{name}"' in index for name in runbook_names())


@pytest.mark.e2e
@pytest.mark.parametrize(
    "path",
    [
        "/runbooks/no-such-runbook",
        "/runbooks/cost-spike.md",
        "/runbooks/..%2Frules.yaml",
        "/runbooks/%2e%2e%2f%2e%2e%2fsettings.py",
        "/runbooks/../alerts/rules.yaml",
        "/runbooks/..",
        "/runbooks/cost-spike/../../rules.yaml",
    ],
)
def test_unknown_runbooks_and_paths_outside_them_get_404(receiver: Receiver, path: str) -> None:
    status, _, body = get(receiver, path)
    assert status == 404, (path, body[:200])
    assert "metric:" not in body and "class Settings" not in body
