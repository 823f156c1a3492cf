"""When requests arrive and who sends them: the diurnal load curve and the request table.

Load follows a day curve (peak mid-afternoon UTC, trough at night) with per-minute noise,
so dashboards and baselines see realistic shape; each second's count is Poisson around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from spanline.simulator.workload_catalog import (
    CANARY_PERIOD_S,
    DIURNAL_AMPLITUDE,
    DIURNAL_PEAK_HOUR_UTC,
    FEATURES,
    MINUTE_NOISE_SIGMA,
    USERS_PER_TENANT_SHARE,
)
from spanline.simulator.workload_incident import Incident
from spanline.simulator.workload_spans import RequestColumns, hex_ids, hex_strings

_MS_PER_S = 1000
_SESSION_MS = 30 * 60 * 1000
_CANARY_FEATURE = next(i for i, f in enumerate(FEATURES) if f.name == "doc-search")


def diurnal_factor(epoch_s: np.ndarray) -> npt.NDArray[np.float64]:
    """Load multiplier at these UTC epoch seconds: 1 ± amplitude, peaking at the peak hour."""
    hour: npt.NDArray[np.float64] = (np.asarray(epoch_s, dtype=np.float64) % 86_400.0) / 3600.0
    return 1.0 + DIURNAL_AMPLITUDE * np.cos(2.0 * np.pi * (hour - DIURNAL_PEAK_HOUR_UTC) / 24.0)


def tenant_weights(n: int) -> npt.NDArray[np.float64]:
    """Tenant sizes ∝ 1/(rank+1): the first tenant is the biggest, as in real customer bases."""
    weights: npt.NDArray[np.float64] = 1.0 / np.arange(1, n + 1)
    shares: npt.NDArray[np.float64] = weights / weights.sum()
    return shares


@dataclass(frozen=True)
class Requests:
    """One block's requests, sorted by arrival; ``columns`` feed every span of the request."""

    arrival_ms: np.ndarray
    tenant: np.ndarray
    feature: np.ndarray
    prompt_version: np.ndarray
    canary: np.ndarray
    columns: RequestColumns

    def __len__(self) -> int:
        return len(self.arrival_ms)


def block_requests(
    rng: np.random.Generator,
    epoch_ms: int,
    first_s: int,
    end_ms: float,
    requests_per_s: float,
    tenants: tuple[str, ...],
    raw_user_ids: bool,
    incident: Incident | None = None,
) -> Requests:
    """Requests arriving in ``[first_s, end_ms)`` (offsets from ``epoch_ms``), canaries included.

    The block shares one minute-noise draw; ``end_ms`` cuts the last, partial second. An
    incident with a ``traffic_factor`` adds its target's surplus requests on top.
    """
    seconds = np.arange(first_s, int(np.ceil(end_ms / _MS_PER_S)))
    noise = rng.lognormal(0.0, MINUTE_NOISE_SIGMA)
    rate = requests_per_s * noise * diurnal_factor(epoch_ms / _MS_PER_S + seconds)
    counts = rng.poisson(rate)
    arrival = np.repeat(seconds * _MS_PER_S, counts) + np.floor(rng.random(counts.sum()) * _MS_PER_S)
    arrival = np.sort(arrival[arrival < end_ms])
    n = len(arrival)
    tenant = rng.choice(len(tenants), size=n, p=tenant_weights(len(tenants)))
    shares = np.array([f.share for f in FEATURES])
    feature = rng.choice(len(FEATURES), size=n, p=shares / shares.sum())
    if (
        incident is not None
        and incident.effects.traffic_factor > 1.0
        and incident.overlaps(first_s * _MS_PER_S, end_ms)
    ):
        arrival, tenant, feature = _surge(rng, incident, seconds, rate, end_ms, len(tenants), arrival, tenant, feature)
        n = len(arrival)
    prompt_version = _prompt_versions(rng, feature)

    canary_arrival, canary_tenant = _canaries(first_s, end_ms, len(tenants))
    all_arrival = np.concatenate([arrival, canary_arrival])
    order = np.argsort(all_arrival, kind="stable")
    all_tenant = np.concatenate([tenant, canary_tenant])[order]
    all_feature = np.concatenate([feature, np.full(len(canary_arrival), _CANARY_FEATURE)])[order]
    canary = np.concatenate([np.zeros(n, bool), np.ones(len(canary_arrival), bool)])[order]
    all_version = np.concatenate([prompt_version, np.zeros(len(canary_arrival), np.int64)])[order]
    users = _users(rng, all_tenant, len(tenants))
    sorted_arrival = all_arrival[order]

    names = np.array(tenants, dtype=object)
    services = np.array([f.service for f in FEATURES], dtype=object)
    feature_names = np.array([f.name for f in FEATURES], dtype=object)
    session = _session_ids(all_tenant, users, (epoch_ms + sorted_arrival) // _SESSION_MS)
    session[canary] = None
    user_id: np.ndarray | None = None
    if raw_user_ids:
        user_id = _user_names(tenants)[all_tenant, users]
        user_id[canary] = None
    columns = RequestColumns(
        trace_id=hex_ids(rng, len(order), 16),
        tenant_id=names[all_tenant],
        service=services[all_feature],
        feature=feature_names[all_feature],
        session_id=session,
        user_id=user_id,
    )
    return Requests(sorted_arrival, all_tenant, all_feature, all_version, canary, columns)


def _surge(
    rng: np.random.Generator,
    incident: Incident,
    seconds: np.ndarray,
    rate: np.ndarray,
    end_ms: float,
    n_tenants: int,
    arrival: np.ndarray,
    tenant: np.ndarray,
    feature: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge the target's extra requests (``traffic_factor - 1`` times its usual rate) into the block."""
    target = incident.target
    weights = tenant_weights(n_tenants)
    tenant_share = 1.0 if target.tenant_rank is None else weights[target.tenant_rank]
    shares = np.array([f.share for f in FEATURES]) / sum(f.share for f in FEATURES)
    features = [i for i, f in enumerate(FEATURES) if not target.features or f.name in target.features]
    feature_share = shares[features].sum()
    inside = incident.window_mask(seconds * float(_MS_PER_S))
    extra_rate = rate * tenant_share * feature_share * (incident.effects.traffic_factor - 1.0) * inside
    counts = rng.poisson(extra_rate)
    extra = np.repeat(seconds * _MS_PER_S, counts) + np.floor(rng.random(counts.sum()) * _MS_PER_S)
    extra = extra[(extra < end_ms) & incident.window_mask(extra)]
    if target.tenant_rank is None:
        extra_tenant = rng.choice(n_tenants, size=len(extra), p=weights)
    else:
        extra_tenant = np.full(len(extra), target.tenant_rank)
    extra_feature = np.array(features)[rng.choice(len(features), size=len(extra), p=shares[features] / feature_share)]
    merged = np.concatenate([arrival, extra])
    order = np.argsort(merged, kind="stable")
    return merged[order], np.concatenate([tenant, extra_tenant])[order], np.concatenate([feature, extra_feature])[order]


def _prompt_versions(rng: np.random.Generator, feature: np.ndarray) -> npt.NDArray[np.intp]:
    """Index into each feature's ``prompt_versions``, drawn by the rollout shares."""
    width = max(len(f.prompt_versions) for f in FEATURES)
    cumulative = np.ones((len(FEATURES), width))
    for i, spec in enumerate(FEATURES):
        cumulative[i, : len(spec.prompt_versions)] = np.cumsum([share for _, share in spec.prompt_versions])
    versions: npt.NDArray[np.intp] = (rng.random(len(feature))[:, None] > cumulative[feature]).sum(axis=1)
    return versions


def _canaries(first_s: int, end_ms: float, n_tenants: int) -> tuple[np.ndarray, np.ndarray]:
    """One retrieval canary per tenant and period, tenants staggered through the period."""
    first_period = first_s // CANARY_PERIOD_S
    last_period = int(np.ceil(end_ms / _MS_PER_S / CANARY_PERIOD_S))
    periods = np.arange(first_period, last_period + 1)
    tenant = np.tile(np.arange(n_tenants), len(periods))
    offset_ms = (5_000 + 13_000 * tenant) % (CANARY_PERIOD_S * _MS_PER_S)
    arrival = (np.repeat(periods, n_tenants) * CANARY_PERIOD_S * _MS_PER_S + offset_ms).astype(np.float64)
    keep = (arrival >= first_s * _MS_PER_S) & (arrival < end_ms)
    return arrival[keep], tenant[keep]


def _user_pool(n_tenants: int) -> np.ndarray:
    """Users per tenant, in proportion to the tenant's size."""
    return np.maximum(50, (USERS_PER_TENANT_SHARE * tenant_weights(n_tenants)).astype(np.int64))


def _users(rng: np.random.Generator, tenant: np.ndarray, n_tenants: int) -> npt.NDArray[np.int64]:
    """A user index per request: heavy users are few, as in real products (power-law draw)."""
    users: npt.NDArray[np.int64] = np.floor(_user_pool(n_tenants)[tenant] * rng.random(len(tenant)) ** 2).astype(
        np.int64
    )
    return users


@cache
def _user_names(tenants: tuple[str, ...]) -> np.ndarray:
    """Raw user ids ``<tenant>-user-NNNNN`` as a [tenant, user] table, built once per tenant set."""
    width = int(_user_pool(len(tenants)).max())
    return np.array([[f"{t}-user-{u:05d}" for u in range(width)] for t in tenants], dtype=object)


def _session_ids(tenant: np.ndarray, user: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    """Session = (tenant, user, 30-minute window), scrambled into an opaque 16-hex id."""
    mixed = (
        (tenant.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        ^ user.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
        ^ bucket.astype(np.uint64) * np.uint64(0x94D049BB133111EB)
    )
    return hex_strings(mixed.astype(">u8").tobytes(), 8)
