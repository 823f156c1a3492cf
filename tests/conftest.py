"""Fixtures shared by every test module (they live in tests/support and are only re-exported
here) and the test tiers: `unit`, `scenarios`, `e2e`, `faults` (pyproject.toml declares them)."""

from __future__ import annotations

import os

import pytest

from tests.support.debian import chromium, compose_cli, prometheus_server, promtool
from tests.support.kafka_broker import apache_kafka, kafka_broker, tansu_kafka

__all__ = [
    "apache_kafka",
    "chromium",
    "compose_cli",
    "kafka_broker",
    "prometheus_server",
    "promtool",
    "tansu_kafka",
]

# The CLI sizes its tables to the terminal (spanline/cli.py); the tests read those tables, so they
# see the same width in any terminal, under any runner, as when output goes to a file.
os.environ["COLUMNS"] = "140"

#: The tiers a module declares itself (`pytestmark`, or a test's own mark); every other test is `unit`.
DECLARED_TIERS = ("scenarios", "e2e", "faults")
#: Fixtures that start a real Kafka broker: a test that uses one, even through another fixture,
#: cannot be a unit test.
BROKER_FIXTURES = frozenset({"kafka_broker", "apache_kafka", "tansu_kafka"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects, which reads the marks added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test outside the declared tiers `unit`, and refuse a broker in that tier."""
    misplaced = []
    for item in items:
        if any(item.get_closest_marker(tier) for tier in DECLARED_TIERS):
            continue
        if BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            misplaced.append(item.nodeid)
        item.add_marker(pytest.mark.unit)
    if misplaced:
        raise pytest.UsageError(
            "these tests start a Kafka broker but are not marked e2e or faults "
            "(add `pytestmark = pytest.mark.e2e` to the module, or mark the test):\n  " + "\n  ".join(misplaced)
        )
