"""User-id hashing: raw user ids never leave the collector (docs/requirements.md §2, §8).

Each tenant gets its own salt, derived from one master secret, so the same person has
unrelated hashes in two tenants and a leaked hash cannot be joined across tenants. The two
functions are the SDK's (which hashes with a tenant's salt before writing to Kafka); the
master secret stays here, on the server.
"""

from __future__ import annotations

import secrets

from spanline.secret_file import write_secret_file
from spanline.settings import Settings
from spanline_sdk.hashing import hash_user_id, tenant_salt

__all__ = ["hash_user_id", "stored_master_secret", "tenant_salt"]


def stored_master_secret(settings: Settings, create: bool) -> bytes | None:
    """The master secret from SPANLINE_USER_ID_SALT, else from <home>/salt.

    The receiver creates the file on first start (``create=True``), and so does
    ``spanline tenant-salt`` (which prints a tenant's salt for the SDK's Kafka export).
    """
    if settings.user_id_salt is not None:
        return settings.user_id_salt.get_secret_value().encode()
    path = settings.home / "salt"
    if not path.exists():
        if not create:
            return None
        write_secret_file(path, secrets.token_hex(32).encode())
    return path.read_text().strip().encode()
