"""Realistic traffic of a multi-tenant RAG + agent application, for ``spanline simulate``.

Produces canonical span dicts (the fields of :class:`spanline.contract.schema.Span`)
as a real deployment would send them: support chat, document search, summarisation and a
code agent behind one router, with response caches, retrieval, rerank, streamed LLM calls
on real catalogue models (so cost enrichment prices them), retries, fallbacks, tool calls,
online evals, retrieval canaries and a diurnal load curve.

Time convention: every span gives ``start_time`` (RFC 3339, milliseconds, ``Z``) and
``duration_ms``; ``end_time`` is left to the pipeline's derivation. Child spans lie
within their root: ``start ≥ root start`` and ``start + duration ≤ root start + duration``.

Generation is column-wise per 60-simulated-second block (numpy draws per field, not per
span); each block has its own generator seeded by ``(seed, block)``, so output is
deterministic for a seed. An optional :class:`~spanline.simulator.workload_incident.Incident`
changes how the requests inside its window are drawn (``spanline simulate --scenario``); blocks
it does not touch are the baseline's, draw for draw.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

import numpy as np
import pandas as pd

from spanline.contract.schema import TOKEN_FIELDS
from spanline.simulator.workload_arrivals import Requests, block_requests
from spanline.simulator.workload_catalog import FEATURES
from spanline.simulator.workload_flows import simulate_block
from spanline.simulator.workload_incident import Incident, IncidentRows
from spanline.simulator.workload_indexes import index_builds

#: Simulated seconds generated together: large enough for numpy to pay off, small enough to stream.
BLOCK_S = 60
DEFAULT_TENANTS = ("acme", "globex", "initech", "umbrella")


@dataclass(frozen=True, kw_only=True)
class WorkloadConfig:
    """What to simulate. ``start`` is required: generated spans are stamped from it (naive = UTC)."""

    seed: int = 7
    start: datetime
    duration_s: float = 600.0
    #: Mean request rate before the diurnal factor (retrieval canaries come on top).
    requests_per_s: float = 20.0
    #: Tenants, largest first: sizes are ∝ 1/(rank+1).
    tenants: tuple[str, ...] = DEFAULT_TENANTS
    #: Put raw ``user_id`` on spans for the receiver to hash; off = no user ids at all.
    raw_user_ids: bool = False
    #: A failure injected into the traffic (None = baseline only).
    incident: Incident | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            object.__setattr__(self, "start", self.start.replace(tzinfo=UTC))
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError("duration_s must be a positive number of seconds")
        if not (math.isfinite(self.requests_per_s) and self.requests_per_s > 0):
            raise ValueError("requests_per_s must be positive")
        if not self.tenants or len(set(self.tenants)) != len(self.tenants) or not all(self.tenants):
            raise ValueError("tenants must be non-empty, distinct, non-blank names")
        rank = self.incident.target.tenant_rank if self.incident else None
        if rank is not None and not 0 <= rank < len(self.tenants):
            raise ValueError(f"the incident targets tenant #{rank}, but only {len(self.tenants)} tenant(s) exist")


def generate_traces(config: WorkloadConfig) -> Iterator[list[dict[str, object]]]:
    """Yield one chunk per simulated second: the spans of the traces whose request arrived then,
    then the index builds that started then (simulator/workload_indexes.py).

    Chunks are ordered by trace (root first, children by start time), a trace never
    straddles two chunks, and every span has ``tenant_id`` set. A quiet second yields an
    empty list, so the n-th chunk is always the n-th second (handy for real-time pacing).
    """
    epoch_ms = round(config.start.timestamp() * 1000)
    end_ms = config.duration_s * 1000.0
    seconds = math.ceil(config.duration_s)
    for block, first_s in enumerate(range(0, seconds, BLOCK_S)):
        last_s = min(first_s + BLOCK_S, seconds)
        rng = np.random.default_rng([config.seed, block])
        requests = block_requests(
            rng,
            epoch_ms,
            first_s,
            min(last_s * 1000.0, end_ms),
            config.requests_per_s,
            config.tenants,
            config.raw_user_ids,
            config.incident,
        )
        spans, span_request = simulate_block(rng, requests, epoch_ms, _incident_rows(config.incident, requests))
        second = (requests.arrival_ms[span_request] // 1000).astype(np.int64)
        bounds = np.searchsorted(second, np.arange(first_s, last_s + 1)).tolist()
        builds = index_builds(config.tenants, epoch_ms, first_s, last_s, config.incident)
        for at, (low, high) in enumerate(pairwise(bounds), start=first_s):
            yield spans[low:high] + builds[at] if at in builds else spans[low:high]


def _incident_rows(incident: Incident | None, requests: Requests) -> IncidentRows:
    """Which of the block's requests the incident touches: in its window, of its tenant and features."""
    if incident is None:
        return IncidentRows.none(len(requests))
    hit = incident.window_mask(requests.arrival_ms)
    target = incident.target
    if target.tenant_rank is not None:
        hit &= requests.tenant == target.tenant_rank
    if target.features:
        wanted = [i for i, f in enumerate(FEATURES) if f.name in target.features]
        hit &= np.isin(requests.feature, wanted)
    return IncidentRows(incident.effects, target, hit)


def summarize(spans: Iterable[dict[str, object]]) -> dict[str, object]:
    """Counts by kind, tenant, model and error type, request/trace counts and token totals."""
    frame = pd.DataFrame.from_records(list(spans))
    if frame.empty:
        return {
            "spans": 0,
            "traces": 0,
            "requests": 0,
            "by_kind": {},
            "by_tenant": {},
            "by_model": {},
            "by_error_type": {},
            "tokens": dict.fromkeys(TOKEN_FIELDS, 0),
        }

    def counts(column: str) -> dict[str, int]:
        if column not in frame:
            return {}
        return {str(key): int(value) for key, value in frame[column].value_counts(dropna=True).items()}

    return {
        "spans": len(frame),
        "traces": int(frame["trace_id"].nunique()),
        "requests": int((frame["kind"] == "request").sum()),
        "by_kind": counts("kind"),
        "by_tenant": counts("tenant_id"),
        "by_model": counts("model_requested"),
        "by_error_type": counts("error_type"),
        "tokens": {f: int(frame[f].fillna(0).sum()) if f in frame else 0 for f in TOKEN_FIELDS},
    }
