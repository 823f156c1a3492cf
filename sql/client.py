"""Opening ClickHouse through clickhouse-connect: chDB in-process or a server, one API.

``chdb:///abs/path`` runs ClickHouse inside this process (clickhouse-connect's chdb backend,
data on disk at that path); ``http(s)://user@host:port`` talks to a server. Both return the
same ``Client`` with the same ``command/query/insert*`` methods and settings handling.

chDB holds an exclusive lock on its data directory (``<path>/status``): another process
cannot open it, not even to read, and one process can have one path open at a time (closing
every client releases it). Those cases become ConfigErrors that say what to do.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ProgrammingError
from pydantic import SecretStr

from spanline.errors import ConfigError

_OTHER_PATH_OPEN = re.compile(r"already initialized with path '([^']*)'")
_STATUS_PID = re.compile(r"^PID: (\d+)", re.MULTILINE)


def connect(url: str, database: str | None = None, password: SecretStr | None = None) -> Client:
    """A clickhouse-connect client for ``url``, using ``database`` by default (it must exist).

    ``password`` overrides one in a server URL, so secrets can stay out of DSNs. Server
    failures (refused, timeout) surface as clickhouse-connect errors for
    :func:`spanline.sql.classify.storage_errors`.
    """
    scheme = urlparse(url).scheme
    if scheme == "chdb":
        return _connect_chdb(url, database)
    if scheme in ("http", "https"):
        return clickhouse_connect.get_client(
            dsn=url,
            interface=scheme,  # clickhouse-connect otherwise infers TLS from the port only
            database=database,
            password=password.get_secret_value() if password is not None else "",
        )
    raise ConfigError(f"ClickHouse URL {url!r} must be chdb:///abs/path or http(s)://[user@]host[:port]")


def _connect_chdb(url: str, database: str | None) -> Client:
    parsed = urlparse(url)
    if parsed.netloc or not parsed.path.startswith("/") or parsed.query or parsed.fragment:
        raise ConfigError(f"chDB URL {url!r} must be chdb:///absolute/path (three slashes, no options)")
    path = Path(os.path.realpath(parsed.path))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the chDB directory {path}: {exc.strerror}") from exc
    try:
        # The path goes in as a keyword: clickhouse-connect would not unquote it from a DSN.
        return clickhouse_connect.get_client(interface="chdb", path=str(path), database=database)
    except ProgrammingError as exc:
        explanation = _open_failure(path, exc)
        if explanation is None:
            raise
        raise explanation from exc


def _open_failure(path: Path, exc: ProgrammingError) -> ConfigError | None:
    """Why chDB could not open ``path``, when the cause is a lock; None for other failures."""
    other = _OTHER_PATH_OPEN.search(str(exc))
    if other:
        return ConfigError(
            f"this process already has the chDB path {other.group(1)} open and chDB allows one path "
            f"per process; close its clients before opening {path}"
        )
    holder = _lock_holder(path)
    if holder is not None:
        return ConfigError(
            f"another Spanline process (pid {holder}) holds this chDB path ({path}); "
            "query through the running service or stop it"
        )
    return None


def _lock_holder(path: Path) -> str | None:
    """The pid recorded in chDB's status file when another process holds its lock, else None.

    Only called after opening failed, so this process holds no engine on ``path`` and the
    brief probe lock cannot collide with its own.
    """
    try:
        fd = os.open(path / "status", os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        match = _STATUS_PID.search(os.read(fd, 4096).decode(errors="replace"))
        return match.group(1) if match else "unknown"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
