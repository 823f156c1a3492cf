"""The tenant -> API key file shared by the receiver (which checks keys), `spanline up` (which
creates demo keys) and the simulator (which sends with them)."""

from __future__ import annotations

import secrets
from pathlib import Path

import orjson
from pydantic import SecretStr

from spanline.errors import ConfigError
from spanline.secret_file import write_secret_file
from spanline.settings import Settings


def api_keys_path(settings: Settings) -> Path:
    return settings.api_keys_file or settings.home / "api_keys.json"


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
    write_secret_file(path, orjson.dumps(keys, option=orjson.OPT_INDENT_2))
    return {tenant: SecretStr(key) for tenant, key in keys.items()}
