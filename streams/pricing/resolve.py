"""Model-name resolution with genai-prices' own lookup, once per distinct (provider, name).

``DataSnapshot.find_provider_model`` is exactly what ``calc_price`` uses (provider id or alias,
each model's ``match`` clauses, fallback providers such as Azure -> OpenAI, compact-date
normalisation), so ``gpt-4o-2024-08-06`` resolves here as it does there. An empty provider lets
genai-prices infer it from the model name, as ``calc_price`` does; an unknown provider is a miss,
never a guess (a self-hosted Llama must not get some cloud's Llama price). Provider names are first
read through the conventions' alias table (:mod:`spanline.contract.providers`), so ``x_ai`` or
``gcp.vertex_ai`` finds the catalog's provider.

**Router-style names.** genai-prices does not resolve ``openai/gpt-4o-2024-08-06`` (LiteLLM and
gateways prefix the provider), so a name the catalog misses is tried again without its first
``<provider>/`` segment when that prefix names a catalog provider (``openai/``, ``anthropic/``,
``vertex_ai/``, ``bedrock/``, ``azure/`` ...) and the span names no provider or the same one: the
prefix never moves a span of another provider (a self-hosted model) onto a cloud's price.
**Deployment names** (an Azure deployment, a Bedrock inference profile) carry no model name; a
configured mapping, per catalog provider, turns them into one before the lookup.

Both caches here, ours and the snapshot's own lookup caches, grow with every distinct name seen.
Names come from clients, so the cache is bounded: when it is full, both are dropped and rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from genai_prices.data_snapshot import DataSnapshot
from pydantic import TypeAdapter, ValidationError

from spanline.contract.providers import catalog_provider
from spanline.errors import ConfigError
from spanline.yaml_file import read_yaml

#: Distinct (provider, model name) pairs remembered before the caches are rebuilt.
MAX_CACHED_NAMES: Final = 16_384

Identity = tuple[str, str]
#: Catalog provider id -> lower-cased deployment name -> model name.
Deployments = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class NameMatch:
    """What one (provider, model name) is.

    ``identity`` is the catalog's (provider id, model id) when genai-prices knows the name, else the
    lower-cased pair as written: overrides are filed under it, so an override for ``openai/gpt-4o``
    also covers ``gpt-4o-2024-08-06``, which the catalog prices as the same model.
    """

    identity: Identity
    series: int  # catalog price series, -1 when the catalog has no price
    #: The lower-cased name without a router prefix naming the same provider (price corrections for
    #: exact names match it, so ``vertex_ai/gemini-2.5-flash-preview-04-17`` is that name).
    name: str = ""


class ModelResolver:
    def __init__(
        self,
        snapshot_factory: Callable[[], DataSnapshot],
        series_of_model: dict[int, int],
        deployments: Deployments | None = None,
    ) -> None:
        self._snapshot_factory = snapshot_factory
        self._series_of_model = series_of_model
        self._snapshot = snapshot_factory()
        self._providers = frozenset(p.id for p in self._snapshot.providers)
        self._deployments = {p: dict(names) for p, names in (deployments or {}).items()}
        self._cache: dict[tuple[str, str], NameMatch] = {}

    def match(self, provider: str, name: str) -> NameMatch:
        key = (provider, name)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= MAX_CACHED_NAMES:
                self._cache.clear()
                self._snapshot = self._snapshot_factory()
            found = self._cache[key] = self._lookup(catalog_provider(provider), name)
        return found

    def _lookup(self, provider: str, name: str) -> NameMatch:
        for candidate_provider, candidate in self._candidates(provider, name):
            deployed = self._deployments.get(candidate_provider, {}).get(candidate.strip().lower(), candidate)
            try:
                found_provider, model = self._snapshot.find_provider_model(
                    deployed, None, candidate_provider or None, None
                )
            except LookupError:
                continue
            bare = _without_prefix(candidate, found_provider.id)
            return NameMatch((found_provider.id, model.id), self._series_of_model[id(model)], bare)
        return NameMatch((provider.strip().lower(), name.strip().lower()), -1, _without_prefix(name, provider))

    def _candidates(self, provider: str, name: str) -> list[tuple[str, str]]:
        """The name as sent, then without a ``<provider>/`` prefix that agrees with the span's provider."""
        candidates = [(provider, name)]
        prefix, slash, rest = name.partition("/")
        prefixed = catalog_provider(prefix)
        if slash and rest and prefixed in self._providers and (not provider or provider == prefixed):
            candidates.append((prefixed, rest))
        return candidates


def _without_prefix(name: str, provider_id: str) -> str:
    prefix, slash, rest = name.strip().lower().partition("/")
    return rest if slash and rest and catalog_provider(prefix) == provider_id else name.strip().lower()


_DEPLOYMENTS = TypeAdapter(dict[str, dict[str, str]])


def read_deployments(path: Path) -> dict[str, dict[str, str]]:
    """``{provider: {deployment name: model name}}`` from YAML; provider spellings are read as aliases."""
    try:
        document = _DEPLOYMENTS.validate_python(read_yaml(path, "model deployments file") or {})
    except ValidationError as exc:
        raise ConfigError(f"model deployments file {path}: expected provider: {{deployment: model}}: {exc}") from exc
    return {
        catalog_provider(provider): {deployment.strip().lower(): model for deployment, model in names.items()}
        for provider, names in document.items()
    }
