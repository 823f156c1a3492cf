"""Scraping a Spanline process's /metrics page the way Prometheus does, parsed by
prometheus_client's own parser."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Samples:
    """Every sample of one scrape, by name and labels."""

    values: dict[tuple[str, Labels], float]

    def value(self, name: str, **labels: str) -> float:
        """One sample; a missing one is an error, never a silent 0."""
        key = (name, tuple(sorted(labels.items())))
        assert key in self.values, f"no sample {name}{labels} on the page"
        return self.values[key]

    def labelled(self, name: str, by: str, **labels: str) -> dict[str, float]:
        """The samples of ``name`` that carry ``labels``, by the value of label ``by``."""
        return {
            dict(key)[by]: value
            for (sample, key), value in self.values.items()
            if sample == name and labels.items() <= dict(key).items()
        }


def scrape(base_url: str) -> Samples:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers.get_content_type() == "text/plain"
        text = response.read().decode()
    return Samples(
        {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
    )


def sample(metric: Collector, name: str, **labels: str) -> float:
    """A metric's current value, read through a registry of its own (0 for a child not created yet)."""
    registry = CollectorRegistry()
    registry.register(metric)
    return registry.get_sample_value(name, labels) or 0.0
