"""User-id hashing: raw user ids never leave the collector (docs/requirements.md §2, §8).

Each tenant gets its own salt, derived from one master secret, so the same person has
unrelated hashes in two tenants and a leaked hash cannot be joined across tenants.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from spanline.secret_file import write_secret_file
from spanline.settings import Settings


def tenant_salt(master_secret: bytes, tenant_id: str) -> bytes:
    """The per-tenant salt: HMAC-SHA256(master secret, tenant id)."""
    return hmac.new(master_secret, tenant_id.encode(), hashlib.sha256).digest()


def hash_user_id(salt: bytes, user_id: str) -> str:
    """Stable, non-reversible user id: HMAC-SHA256(tenant salt, user id), 32 hex chars."""
    return hmac.new(salt, user_id.encode(), hashlib.sha256).hexdigest()[:32]


def stored_master_secret(settings: Settings, create: bool) -> bytes | None:
    """The master secret from SPANLINE_USER_ID_SALT, else from <home>/salt.

    The receiver creates the file on first start (``create=True``); the SDK only reads it,
    so both hash a user the same way on one machine without extra configuration.
    """
    if settings.user_id_salt is not None:
        return settings.user_id_salt.get_secret_value().encode()
    path = settings.home / "salt"
    if not path.exists():
        if not create:
            return None
        write_secret_file(path, secrets.token_hex(32).encode())
    return path.read_text().strip().encode()
