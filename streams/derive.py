"""Derived span fields, computed once, column-wise, in this one place (docs/requirements.md §2).

- ``duration_ms`` from ``end_time - start_time`` when only the end was given;
- ``end_time`` from ``start_time + duration_ms`` when only the duration was given;
- ``tpot_ms`` (time per output token) = (duration − TTFT) / (output_tokens − 1), defined
  only for streamed calls (TTFT known) with at least two output tokens;
- ``error_type`` = ``other`` for errors that did not say which.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The columns ``derive`` computes (the rest of its frame is the input's).
DERIVED = ("duration_ms", "end_time", "tpot_ms", "error_type")


def derive(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy(deep=False)
    start = out["start_time"]
    measured_ms = (out["end_time"] - start).dt.total_seconds() * 1000.0
    duration = out["duration_ms"].astype("float64")
    out["duration_ms"] = np.where(np.isnan(duration), measured_ms, duration)
    given_end = out["end_time"]
    computed_end = start + pd.to_timedelta(out["duration_ms"], unit="ms")
    out["end_time"] = given_end.where(given_end.notna(), computed_end).astype("datetime64[ms, UTC]")
    out["tpot_ms"] = tpot_ms(out["duration_ms"], out["ttft_ms"], out["output_tokens"])
    error_type = out["error_type"].astype(object)  # all-NULL batches arrive as float NaN
    out["error_type"] = error_type.where((out["status"] != "error") | error_type.notna(), "other")
    return out


def tpot_ms(duration_ms: pd.Series, ttft_ms: pd.Series, output_tokens: pd.Series) -> pd.Series:
    ttft = ttft_ms.astype("float64")
    tokens = output_tokens.astype("float64")
    streamed = ~np.isnan(ttft) & (tokens > 1) & (duration_ms >= ttft)
    per_token = (duration_ms - ttft) / np.where(tokens > 1, tokens - 1, 1)
    return pd.Series(np.where(streamed, per_token, np.nan), index=duration_ms.index).astype("Float64")
