"""Opening ClickHouse: chDB in-process (``chdb:///path``) or a server (``http(s)://``), same API."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from pydantic import SecretStr

from spanline.errors import ConfigError
from spanline.sql.classify import storage_errors


def connect(url: str, password: SecretStr | None = None) -> Client:
    """A clickhouse-connect client. chDB lets one process hold a data path (NOTES.md)."""
    if url.startswith("chdb://"):
        path = url.removeprefix("chdb://")
        if path != "memory":
            Path(path).mkdir(parents=True, exist_ok=True)
        try:
            return clickhouse_connect.get_client(dsn=url)
        except Exception as exc:
            if "lock" in str(exc).lower():
                raise ConfigError(
                    f"another Spanline process holds the chDB path {path}; query through the running "
                    "service (`spanline sql query` does this by itself) or stop it first"
                ) from exc
            raise
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"ClickHouse URL {url!r} must be chdb:///abs/path or http(s)://[user@]host[:port]")
    with storage_errors():
        return clickhouse_connect.get_client(
            host=parsed.hostname,
            port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
            username=parsed.username or "default",
            password=(password.get_secret_value() if password else parsed.password) or "",
            secure=parsed.scheme == "https",
            connect_timeout=5,
            send_receive_timeout=60,
        )
