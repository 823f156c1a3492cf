"""Per-tenant API keys: the key decides the tenant, never the payload (SPEC §3)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from pathlib import Path

import orjson
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


def read_keys_file(path: Path) -> dict[str, SecretStr]:
    """A JSON object of tenant -> API key."""
    try:
        raw = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read API keys file {path}: {exc}") from exc
    if not isinstance(raw, dict) or not all(isinstance(v, str) and v for v in raw.values()):
        raise ConfigError(f"API keys file {path} must be a JSON object of tenant -> non-empty key string")
    return {tenant: SecretStr(key) for tenant, key in raw.items()}


def create_dev_keys(path: Path, tenants: tuple[str, ...]) -> dict[str, SecretStr]:
    """Random keys for the embedded demo, written once with owner-only permissions."""
    keys = {tenant: f"sl-{tenant}-{secrets.token_urlsafe(18)}" for tenant in tenants}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(keys, option=orjson.OPT_INDENT_2))
    path.chmod(0o600)
    return {tenant: SecretStr(key) for tenant, key in keys.items()}
