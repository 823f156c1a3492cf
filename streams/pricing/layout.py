"""Column layout of the one flat price table that catalog and override prices share.

One row is one price of one *price series* (a catalog model, or an override's model for one
tenant or for every tenant), valid from ``valid_from`` (NaT = since the beginning). Rates are USD
per million tokens; NaN means the price list has no separate rate for that kind of token, so those
tokens are priced as the kind they are part of (cache reads as input, reasoning as output, 1-hour
cache writes as cache writes, audio input as input), which is what genai-prices does. Context tiers
are stored as ``<key>_tier<n>_above`` (a threshold on *total* input tokens, +inf when there is no
tier) and ``<key>_tier<n>_mtok``. ``output_thinking_mtok`` is the output rate of a response produced
with thinking on (a span with reasoning tokens), for models whose provider bills all of such a
response's output at a higher rate (Gemini 2.5 Flash preview); NaN for every other model. ``entry``
names the row for the stored ``price_entry`` column (``catalog:<genai-prices version>``,
``correction:<id>``, ``override:<n>``).
"""

from __future__ import annotations

import re
from typing import Final

import numpy as np
import pandas as pd

#: Kinds of tokens a span reports, in genai-prices' price-key names (``<key>_mtok``): the schema 1.0
#: counts, then the token classes of schema 1.1 (cache writes by TTL, audio and image tokens).
#: A NaN rate means the class is priced as the kind it is part of (:mod:`.costs` has the chains).
RATE_KEYS: Final = (
    "input",
    "cache_read",
    "cache_write",
    "output",
    "output_reasoning",
    "cache_write_5m",
    "cache_write_1h",
    "input_audio",
    "cache_audio_read",
    "input_image",
    "cache_image_read",
    "output_audio",
    "output_image",
)

SOURCE_CATALOG: Final = "genai-prices"
SOURCE_OVERRIDE: Final = "override"
SOURCE_CORRECTION: Final = "correction"
SOURCE_UNKNOWN: Final = "unknown"
SOURCE_NONE: Final = "none"

#: Columns every price-table row has besides the rate columns.
FIXED_COLUMNS: Final = (
    "series",
    "provider_id",
    "model_id",
    "match",
    "tenant",
    "valid_from",
    "valid_until",
    "daily_from",
    "daily_until",
    "source",
    "version",
    "entry",
    "request_usd",
    "output_thinking_mtok",
)

TOKENS_PER_MTOK: Final = 1_000_000.0
_TIER_ABOVE: Final = re.compile(r".+_tier(\d+)_above")


def rate_column(key: str) -> str:
    return f"{key}_mtok"


def tier_columns(key: str, slot: int) -> tuple[str, str]:
    """(threshold, rate) column names of tier ``slot`` (1-based) of one rate."""
    return f"{key}_tier{slot}_above", f"{key}_tier{slot}_mtok"


def tier_slots(columns: list[str]) -> int:
    """How many tier slots a table has (the most tiers any price in it uses)."""
    slot = 0
    while tier_columns(RATE_KEYS[0], slot + 1)[0] in columns:
        slot += 1
    return slot


def normalise_table(table: pd.DataFrame) -> pd.DataFrame:
    """Fixed column order and dtypes; every rate gets every tier slot (+inf threshold = no tier).

    Rows from different sources (catalog, corrections, overrides) only fill the columns they know.
    """
    table = table.copy()
    slots = max((int(m.group(1)) for c in table.columns if (m := _TIER_ABOVE.fullmatch(c))), default=0)
    rates = []
    for key in RATE_KEYS:
        rates.append(rate_column(key))
        for slot in range(1, slots + 1):
            rates += tier_columns(key, slot)
    for name in rates:
        default = np.inf if name.endswith("_above") else np.nan
        table[name] = table[name].astype(np.float64).fillna(default) if name in table else default
    for name in ("valid_from", "valid_until"):
        table[name] = pd.to_datetime(table.get(name, pd.NaT), utc=True).astype("datetime64[ns, UTC]")
    for name in ("daily_from", "daily_until"):
        table[name] = pd.to_timedelta(table.get(name, pd.NaT)).astype("timedelta64[ns]")
    table["tenant"] = table["tenant"].fillna("") if "tenant" in table else ""
    table["request_usd"] = table["request_usd"].astype(np.float64).fillna(0.0)
    table["output_thinking_mtok"] = pd.Series(
        table.get("output_thinking_mtok", np.nan), index=table.index, dtype=np.float64
    )
    table["entry"] = table["entry"].fillna("") if "entry" in table else ""
    return table.loc[:, [*FIXED_COLUMNS, *rates]].reset_index(drop=True)
