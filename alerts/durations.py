"""Durations as written in rules.yaml (``30s``, ``5m``, ``6h``, ``7d``)."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^(?P<amount>\d+)(?P<unit>[smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: object) -> timedelta:
    """``"5m"`` -> 5 minutes; a timedelta passes through; anything else is a ValueError."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a duration like 30s, 5m, 6h or 7d")
    return timedelta(**{_UNITS[match["unit"]]: int(match["amount"])})


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling: 300 s -> ``5m``."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
