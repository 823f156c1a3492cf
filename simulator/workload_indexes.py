"""Index builds: each tenant's retrieval indexes are refreshed on a schedule and report their size.

One ``index_build`` span per refresh (its own trace, service ``indexer``), with ``index_name``,
``index_documents`` and ``index_chunks``, the convention tools use for ingestion jobs. Builds are
periodic and drawn without randomness, so they never change the request traffic a seed draws;
an incident's ``index_loss`` removes that share of the documents (and their chunks) from the
target tenant's builds inside its window: the silent "schema change dropped part of the corpus".
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from spanline.simulator.workload_catalog import DOCS_PER_INDEX, FEATURES
from spanline.simulator.workload_incident import Incident

#: Seconds between two refreshes of an index.
BUILD_EVERY_S = 600
#: Chunks per document of a normal build (passages of a few hundred tokens).
CHUNKS_PER_DOCUMENT = 4.2
#: Documents the corpus gains per refresh (it grows slowly; a drop is news).
GROWTH_PER_BUILD = 3
BUILD_MS = 45_000.0
_RAG = [(f.name, f.index_suffix) for f in FEATURES if f.index_suffix]


def index_builds(
    tenants: tuple[str, ...], epoch_ms: int, first_s: int, last_s: int, incident: Incident | None
) -> dict[int, list[dict[str, object]]]:
    """second -> index_build spans starting in that second of [first_s, last_s)."""
    out: dict[int, list[dict[str, object]]] = {}
    for rank, tenant in enumerate(tenants):
        for position, (feature, suffix) in enumerate(_RAG):
            index = f"{tenant}-{suffix}"
            phase = (97 * rank + 211 * position) % BUILD_EVERY_S
            first_build = max(0, -(-(first_s - phase) // BUILD_EVERY_S))
            for build in range(first_build, (last_s - 1 - phase) // BUILD_EVERY_S + 1):
                second = phase + build * BUILD_EVERY_S
                if not first_s <= second < last_s:
                    continue
                documents = DOCS_PER_INDEX // (rank + 1) + GROWTH_PER_BUILD * build
                documents = round(documents * (1.0 - _loss(incident, rank, feature, second)))
                out.setdefault(second, []).append(_span(tenant, feature, index, epoch_ms + second * 1000, documents))
    return out


def _loss(incident: Incident | None, rank: int, feature: str, second: int) -> float:
    """Share of the documents a build at ``second`` loses to the incident (0 outside it)."""
    if incident is None or incident.effects.index_loss is None:
        return 0.0
    target = incident.target
    inside = incident.at_s <= second < incident.at_s + incident.duration_s
    if inside and target.tenant_rank in (None, rank) and (not target.features or feature in target.features):
        return incident.effects.index_loss
    return 0.0


def _span(tenant: str, feature: str, index: str, start_ms: int, documents: int) -> dict[str, object]:
    identity = hashlib.sha256(f"{index}@{start_ms}".encode()).hexdigest()
    start = datetime.fromtimestamp(start_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "span_id": identity[:16],
        "trace_id": identity[16:48],
        "parent_span_id": None,
        "tenant_id": tenant,
        "service": "indexer",
        "feature": feature,
        "environment": "production",
        "kind": "index_build",
        "name": "index.refresh",
        "start_time": start,
        "duration_ms": BUILD_MS,
        "status": "ok",
        "index_name": index,
        "index_documents": documents,
        "index_chunks": round(documents * CHUNKS_PER_DOCUMENT),
    }
