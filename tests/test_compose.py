"""docker-compose.yml validates with the Compose CLI and configures Spanline correctly.

No Docker engine runs here; `docker compose config` (plugin) or `docker-compose config`
(Debian's package, installed on first use by tests/support/debian.py) validates and resolves
the file without one. The test fails, never skips, when neither can be had.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
import yaml

from spanline.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
SCRAPE_CONFIG = ROOT / "dashboards/provisioning/prometheus/prometheus.yaml"
SPANLINE_SERVICES = ("collector", "worker-1", "worker-2")


@pytest.fixture(scope="module")
def config(compose_cli: list[str]) -> dict:
    result = subprocess.run(
        [*compose_cli, "-f", str(ROOT / "docker-compose.yml"), "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},  # the file's defaults, not this machine's SPANLINE_*
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_file_runs_the_whole_stack(config: dict) -> None:
    assert set(config["services"]) == {"kafka", "clickhouse", "grafana", "prometheus", *SPANLINE_SERVICES}


def test_kafka_runs_in_kraft_mode_without_zookeeper(config: dict) -> None:
    kafka = config["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in str(config).lower()


def test_grafana_has_the_clickhouse_plugin_and_the_provisioning(config: dict) -> None:
    grafana = config["services"]["grafana"]
    assert grafana["environment"]["GF_INSTALL_PLUGINS"] == "grafana-clickhouse-datasource"
    mounts = {str(v["target"] if isinstance(v, dict) else v.split(":")[1]): v for v in grafana["volumes"]}
    for target in ("/etc/grafana/provisioning/datasources", "/etc/grafana/provisioning/dashboards"):
        assert target in mounts
    datasource = (ROOT / "dashboards/provisioning/datasources").glob("*.yaml")
    needed = {
        name
        for path in datasource
        for name in ("GRAFANA_CLICKHOUSE_HOST", "GRAFANA_CLICKHOUSE_PASSWORD")
        if name in path.read_text()
    }
    assert needed <= set(grafana["environment"])
    assert grafana["environment"]["GRAFANA_PROMETHEUS_URL"] == "http://prometheus:9090"


def test_prometheus_scrapes_the_receiver_and_every_worker_at_their_metrics_ports(config: dict, promtool: str) -> None:
    prometheus = config["services"]["prometheus"]
    mounts = [mount(volume) for volume in prometheus["volumes"]]
    (source, target) = next((Path(s), t) for s, t in mounts if t.endswith(".yaml"))
    assert source == SCRAPE_CONFIG and f"--config.file={target}" in prometheus["command"]
    checked = subprocess.run([promtool, "check", "config", str(source)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    jobs = {
        job["job_name"]: [target for group in job["static_configs"] for target in group["targets"]]
        for job in yaml.safe_load(source.read_text())["scrape_configs"]
    }

    def settings(service: str) -> Settings:
        return load_settings({k: str(v) for k, v in config["services"][service]["environment"].items()})

    assert jobs["spanline-receiver"] == [f"collector:{settings('collector').collector_port}"]
    workers = [s for s in SPANLINE_SERVICES if s.startswith("worker")]
    assert jobs["spanline-worker"] == [f"{w}:{settings(w).worker_web_port}" for w in workers]
    assert all(settings(w).worker_web_host == "0.0.0.0" for w in workers)  # reachable from the prometheus container


def mount(volume: dict | str) -> tuple[str, str]:
    """(source, target) of a volume as either Compose CLI prints it (mapping or short string)."""
    if isinstance(volume, dict):
        return str(volume.get("source", "")), str(volume["target"])
    source, target, *_ = volume.split(":")
    return source, target


@pytest.mark.parametrize("service", SPANLINE_SERVICES)
def test_spanline_services_are_configured_by_valid_environment(config: dict, service: str) -> None:
    environment = {k: str(v) for k, v in config["services"][service]["environment"].items()}
    settings = load_settings(environment)  # unknown SPANLINE_* names would raise
    assert settings.bootstrap_servers == "kafka:9092"
    assert settings.resolved_clickhouse_url == "http://spanline@clickhouse:8123"
    assert orjson.loads(environment["SPANLINE_API_KEYS"]) == {"acme": "sk-acme-change-me"}
    assert set(config["services"][service]["depends_on"]) == {"kafka", "clickhouse"}


def test_two_workers_share_one_consumer_group(config: dict) -> None:
    groups = {
        load_settings({k: str(v) for k, v in config["services"][w]["environment"].items()}).consumer_group
        for w in ("worker-1", "worker-2")
    }
    assert len(groups) == 1
    assert config["services"]["collector"]["environment"]["SPANLINE_COLLECTOR_HOST"] == "0.0.0.0"
