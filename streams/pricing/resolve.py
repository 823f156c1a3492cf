"""Model-name resolution with genai-prices' own lookup, once per distinct (provider, name).

``DataSnapshot.find_provider_model`` is exactly what ``calc_price`` uses (provider id or alias,
litellm-style ``provider/model`` refs, each model's ``match`` clauses, fallback providers such as
Azure -> OpenAI, compact-date normalisation), so ``gpt-4o-2024-08-06`` resolves here as it does there.
An empty provider lets genai-prices infer it from the model name, as ``calc_price`` does; an unknown
provider is a miss, never a guess (a self-hosted Llama must not get some cloud's Llama price).
Provider names are first read through the conventions' alias table
(:mod:`spanline.contract.providers`), so ``x_ai`` or ``gcp.vertex_ai`` finds the catalog's provider.

Both caches here, ours and the snapshot's own lookup caches, grow with every distinct name seen.
Names come from clients, so the cache is bounded: when it is full, both are dropped and rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from genai_prices.data_snapshot import DataSnapshot

from spanline.contract.providers import catalog_provider

#: Distinct (provider, model name) pairs remembered before the caches are rebuilt.
MAX_CACHED_NAMES: Final = 16_384

Identity = tuple[str, str]


@dataclass(frozen=True)
class NameMatch:
    """What one (provider, model name) is.

    ``identity`` is the catalog's (provider id, model id) when genai-prices knows the name, else the
    lower-cased pair as written: overrides are filed under it, so an override for ``openai/gpt-4o``
    also covers ``gpt-4o-2024-08-06``, which the catalog prices as the same model.
    """

    identity: Identity
    series: int  # catalog price series, -1 when the catalog has no price


class ModelResolver:
    def __init__(self, snapshot_factory: Callable[[], DataSnapshot], series_of_model: dict[int, int]) -> None:
        self._snapshot_factory = snapshot_factory
        self._series_of_model = series_of_model
        self._snapshot = snapshot_factory()
        self._cache: dict[tuple[str, str], NameMatch] = {}

    def match(self, provider: str, name: str) -> NameMatch:
        key = (provider, name)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= MAX_CACHED_NAMES:
                self._cache.clear()
                self._snapshot = self._snapshot_factory()
            found = self._cache[key] = self._lookup(provider, name)
        return found

    def _lookup(self, provider: str, name: str) -> NameMatch:
        provider = catalog_provider(provider)
        try:
            found_provider, model = self._snapshot.find_provider_model(name, None, provider or None, None)
        except LookupError:
            return NameMatch((provider.strip().lower(), name.strip().lower()), -1)
        return NameMatch((found_provider.id, model.id), self._series_of_model[id(model)])
