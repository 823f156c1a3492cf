"""User-id hashing with a per-tenant salt: raw user ids never reach Kafka.

Each tenant's salt is derived from Spanline's master secret, so the same person has unrelated
hashes in two tenants and a leaked hash cannot be joined across tenants. The SDK is only ever
given a tenant's salt (``spanline tenant-salt TENANT`` prints it), never the master secret;
the receiver derives the same salt, so both hash a user alike.
"""

from __future__ import annotations

import hashlib
import hmac


def tenant_salt(master_secret: bytes, tenant_id: str) -> bytes:
    """The per-tenant salt: HMAC-SHA256(master secret, tenant id)."""
    return hmac.new(master_secret, tenant_id.encode(), hashlib.sha256).digest()


def hash_user_id(salt: bytes, user_id: str) -> str:
    """Stable, non-reversible user id: HMAC-SHA256(tenant salt, user id), 32 hex chars."""
    return hmac.new(salt, user_id.encode(), hashlib.sha256).hexdigest()[:32]
