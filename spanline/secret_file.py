"""Files holding secrets (API keys, the user-id master secret, the query token) are created
owner-only from the first byte, and replaced atomically: no moment in which another user can
read them, and no half-written file after a crash."""

from __future__ import annotations

import os
from pathlib import Path


def write_secret_file(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` with mode 0o600, through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
