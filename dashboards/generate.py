"""`spanline dashboards generate`: write the dashboards' JSON under dashboards/generated/.

The JSON is committed, so Grafana's file provisioning and reviewers see exactly what the code
builds; :func:`drifted` lets a test fail when the code and the committed files disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

from spanline.contracts import Contract, load_contracts
from spanline.dashboards.catalog import grafana_dashboards
from spanline.dashboards.grafana import dashboard_json
from spanline.dashboards.pipeline import UID as PIPELINE_UID
from spanline.dashboards.pipeline import pipeline_json

GENERATED_DIR = Path(__file__).with_name("generated")
DEFAULT_DATABASE = "spanline"


def rendered(database: str = DEFAULT_DATABASE, contracts: list[Contract] | None = None) -> dict[str, str]:
    """File name -> JSON text of every dashboard (stable: sorted keys, 2-space indent): the
    ClickHouse ones and the pipeline's own (Prometheus)."""
    specs = grafana_dashboards(load_contracts() if contracts is None else contracts)
    models = {spec.uid: dashboard_json(spec, database) for spec in specs} | {PIPELINE_UID: pipeline_json()}
    return {f"{uid}.json": json.dumps(model, indent=2, sort_keys=True) + "\n" for uid, model in models.items()}


def write_generated(directory: Path = GENERATED_DIR, database: str = DEFAULT_DATABASE) -> list[Path]:
    """Write every dashboard and remove stale ``*.json`` files no dashboard produces any more."""
    directory.mkdir(parents=True, exist_ok=True)
    files = rendered(database)
    for stale in set(p.name for p in directory.glob("*.json")) - files.keys():
        (directory / stale).unlink()
    paths = []
    for name, text in files.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def drifted(directory: Path = GENERATED_DIR, database: str = DEFAULT_DATABASE) -> list[str]:
    """Names of files that are missing, stale or different from what the code generates."""
    files = rendered(database)
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.json")}
    return sorted(name for name in files.keys() | on_disk.keys() if files.get(name) != on_disk.get(name))
