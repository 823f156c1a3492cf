"""Numbers as a dashboard reader expects them: by Grafana unit id, or by a column's name suffix."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, TypeGuard


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))


def format_value(value: Any, unit: str = "short") -> str:
    """``value`` in Grafana's ``unit`` (currencyUSD, percentunit, ms, short); '–' for no value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, bool) or not is_number(value):
        return str(value)
    number = float(value)
    if unit == "currencyUSD":
        return f"${number:,.2f}" if abs(number) >= 1 else f"${number:,.4f}"
    if unit == "percentunit":
        return f"{number * 100:.2f}%" if abs(number) < 0.1 else f"{number * 100:.1f}%"
    if unit == "ms":
        return f"{number / 1000:,.2f} s" if abs(number) >= 1000 else f"{number:,.1f} ms"
    if abs(number) >= 1e6:
        return f"{number / 1e6:,.2f}M"
    if abs(number) >= 1e4:
        return f"{number / 1e3:,.1f}k"
    if float(number).is_integer():
        return f"{int(number):,}"
    return f"{number:,.3f}" if abs(number) < 100 else f"{number:,.1f}"


#: A table column's unit from its name (tables mix counts, rates and money); the same rules
#: become Grafana field overrides by regex, so Grafana and the report agree.
COLUMN_UNITS = (
    (r".*(_usd|cost_per_successful_task|all_in_cost_per_success)$", "currencyUSD"),
    (r".*(_rate|_share|share_of_spend|share_of_calls)$", "percentunit"),
    (r".*_ms$", "ms"),
)


def column_unit(column: str, panel_unit: str) -> str:
    for pattern, unit in COLUMN_UNITS:
        if re.fullmatch(pattern, column):
            return unit
    return panel_unit
