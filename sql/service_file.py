"""``<home>/service.json``: how the CLI finds the running worker that owns the chDB path."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson

from spanline.secret_file import write_secret_file


@dataclass(frozen=True)
class RunningService:
    pid: int
    query_url: str
    token: str


class ServiceFile:
    def __init__(self, home: Path) -> None:
        self.path = home / "service.json"

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(24)

    def write(self, *, query_url: str, token: str) -> None:
        write_secret_file(self.path, orjson.dumps({"pid": os.getpid(), "query_url": query_url, "token": token}))

    def read(self) -> RunningService | None:
        """The running service, or None when there is none (stale files are ignored)."""
        try:
            data = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        service = RunningService(int(data["pid"]), str(data["query_url"]), str(data["token"]))
        return service if _alive(service.pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
