"""The SDK's own configuration: explicit arguments first, then a few ``SPANLINE_SDK_*`` variables.

The SDK reads no other variable: an application may carry any ``SPANLINE_*`` setting of the
server without the SDK noticing, and the server's settings ignore ``SPANLINE_SDK_*``.
"""

from __future__ import annotations

import os

ENV_PREFIX = "SPANLINE_SDK_"
#: The receiver's base URL (``/v1/spans`` is appended unless the URL already ends with it).
ENDPOINT_ENV = ENV_PREFIX + "ENDPOINT"
#: The tenant's API key: the receiver decides the tenant from it.
API_KEY_ENV = ENV_PREFIX + "API_KEY"
#: The tenant's user-id salt, hex (``spanline tenant-salt TENANT`` prints it); never the master secret.
TENANT_SALT_ENV = ENV_PREFIX + "TENANT_SALT"
#: Where a receiver listens when nothing else is said (``spanline up`` on this machine).
DEFAULT_ENDPOINT = "http://127.0.0.1:4318"


class ConfigError(ValueError):
    """The SDK was configured in a way it cannot work with; the message says what to change."""


def from_env(explicit: str | None, name: str) -> str | None:
    """``explicit`` when given, else the variable ``name`` when set and not blank."""
    if explicit is not None:
        return explicit
    value = os.environ.get(name, "").strip()
    return value or None


def salt_bytes(salt: bytes | str | None) -> bytes | None:
    """A tenant salt as bytes: raw bytes as given, a string as the hex ``spanline tenant-salt`` prints."""
    if salt is None or isinstance(salt, bytes):
        return salt
    try:
        return bytes.fromhex(salt)
    except ValueError as exc:
        raise ConfigError(f"the tenant salt must be hex, as `spanline tenant-salt TENANT` prints it ({exc})") from None
