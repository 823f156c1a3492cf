"""Per-tenant API keys: the key decides the tenant, never the payload (docs/requirements.md §3)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from pydantic import SecretStr

from spanline.errors import ConfigError


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Keyring:
    """Maps API keys to tenants. Keys are held only as SHA-256 digests."""

    def __init__(self, tenant_keys: Mapping[str, SecretStr]) -> None:
        self._tenant_by_digest = {_digest(k.get_secret_value()): t for t, k in tenant_keys.items()}
        if len(self._tenant_by_digest) != len(tenant_keys):
            raise ConfigError("two tenants share one API key; give each tenant its own key")

    def __len__(self) -> int:
        return len(self._tenant_by_digest)

    def tenant_for(self, api_key: str) -> str | None:
        return self._tenant_by_digest.get(_digest(api_key))
