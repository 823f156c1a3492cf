"""A real Prometheus server scraping Spanline processes on loopback, configured from the
repository's own scrape configuration (dashboards/provisioning/prometheus/prometheus.yaml)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.stack import free_port

SCRAPE_CONFIG = Path(__file__).resolve().parents[2] / "dashboards/provisioning/prometheus/prometheus.yaml"


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (the HTTP API's ``data.result``)."""
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(address, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])


@contextmanager
def prometheus_scraping(binary: str, home: Path, targets: dict[str, list[str]]) -> Iterator[Prometheus]:
    """Prometheus with the repository's scrape jobs, each pointed at ``targets[job]`` and
    scraped every second; stopped on exit (its log is ``home/prometheus.log``)."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    config["global"]["scrape_interval"] = "1s"
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    config_file = home / "prometheus.yaml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    with open(home / "prometheus.log", "ab") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={home / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        server = Prometheus(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            try:
                server.query("1")
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, f"Prometheus did not start; see {home}"
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
