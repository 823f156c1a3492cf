"""Reading the alerting config files (rules, contracts) with errors that say which file and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from spanline.errors import ConfigError


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document at ``path``; ConfigError names ``what`` could not be read and why."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
